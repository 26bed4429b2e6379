"""The precision a ready .tflite was built at is read from its tensors, whatever its name says: each file here is
the project's own TFLite export of a small frozen graph (tests/hourglass_graph.py, 64x64) at one precision. An int8
file with int8 input and output is packaged with its quantisation read from the file, and runs through LiteRT."""
from __future__ import annotations

import numpy as np
import pytest
from hourglass_graph import build_hourglass_pb

from converters.sources.ready import read_ready

FACTS = {"color": "bgr", "mean": 0, "std": 1, "keypoints": "aic14"}
BUILT = {"fp32": "float32", "fp16": "float32", "dynamic": "float32", "int8": "int8", "int16x8": "float32"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from converters.export.tflite import export_tflite
    from converters.sources import load_source

    work = tmp_path_factory.mktemp("precisions")
    source = load_source(build_hourglass_pb(work / "hourglass.pb", size=64), **FACTS)
    calib = np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype(np.float32)
    # every file is named model.tflite: the precision can only come from what is inside
    return {p: export_tflite(source, p, work / p / "model.tflite", calib_inputs=calib, io_dtype=io)
            for p, io in BUILT.items()}


@pytest.mark.parametrize("precision", list(BUILT))
def test_precision_is_read_from_the_tensors(exported, precision):
    result = exported[precision]
    ready = read_ready(result.files["model.tflite"], **FACTS)
    assert ready.precision == precision
    assert (ready.input.dtype, ready.input.quantization) == (result.input_dtype, result.input_quantization)
    assert (ready.output.dtype, ready.output.quantization) == (result.output_dtype, result.output_quantization)


def test_an_int8_file_with_integer_io_is_packaged_and_runs(exported, tmp_path):
    from converters.package_ready import package_pose
    from edge_pose.bundle import load_bundle

    (done,) = package_pose(exported["int8"].files["model.tflite"], tmp_path / "b", facts=FACTS, log=lambda m: None)
    m = load_bundle(done.bundle.path).manifest
    assert (m.format, m.precision, m.execution_precision) == ("tflite", "int8", "f32")
    assert m.input.dtype == "int8" and m.input.quantization == exported["int8"].input_quantization
    assert m.fidelity["judged"] is False and m.fidelity["evaluation"]["crops"] == 16  # run on generated images, not judged

"""Bundles run exactly as they were validated: every backend compiles with the manifest's execution precision, reads
back what the runtime really computes in, and refuses (as a skipped candidate) what it cannot honour. Real bundles,
real OpenVINO and LiteRT; the expectations follow this machine's CPU (bf16 or not), so the suite asserts what really
runs on both kinds."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from shared import coco_mini
from source_fixtures import bundle_from_export

from edge_pose.backends.base import PrecisionMismatch
from edge_pose.backends.openvino import OpenVINOBackend
from edge_pose.bundle import load_bundle
from edge_pose.select import SKIPPED, NothingRuns, open_best
from registry import PRECISIONS, cpu_has_bf16

BF16 = cpu_has_bf16()


_bundle = bundle_from_export


@pytest.fixture(scope="session")
def sb_ov_bundles(onnx_source, onnx_crops, tmp_path_factory):
    """The shared SimpleBaseline-family ONNX as OpenVINO bundles at every precision the format offers."""
    from converters.export.openvino import export_openvino

    root = tmp_path_factory.mktemp("sb-ov")
    out = {}
    for precision in ("fp32", "fp16", "bf16", "int8"):
        result = export_openvino(onnx_source, precision, root / f"export-{precision}",
                                 calib_inputs=onnx_crops[:16] if precision == "int8" else None)
        out[precision] = _bundle(onnx_source, result, root / f"sb-openvino-{precision}")
    return out


def _compiled_precision(session) -> str:
    return session.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_openvino_compiles_float_parts_in_f32_on_every_cpu(sb_ov_bundles, precision):
    """fp32, fp16 (f16 weights) and int8 (float parts) are validated at f32; without the hint a bf16 CPU runs bf16."""
    bundle = sb_ov_bundles[precision]
    assert bundle.manifest.execution_precision == "f32" == PRECISIONS[precision].execution
    session = OpenVINOBackend().load(bundle, "CPU", {"threads": 1})
    assert _compiled_precision(session) == "f32"  # read back from the compiled model itself
    d = session.describe()
    assert d["execution_precision"] == d["validated_precision"] == "f32"


def test_openvino_default_would_not_be_f32_on_a_bf16_cpu(sb_ov_bundles):
    """Why the hint matters: what the plugin does when nobody asks (bf16 on CPUs with native bf16)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(sb_ov_bundles["fp32"].model_path), "CPU")
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == ("bf16" if BF16 else "f32")


def test_bf16_bundle_runs_bf16_where_the_cpu_has_it_else_is_skipped_with_reason(sb_ov_bundles):
    bundle = sb_ov_bundles["bf16"]
    assert bundle.manifest.execution_precision == "bf16"
    if BF16:
        session = OpenVINOBackend().load(bundle, "CPU", {"threads": 1})
        assert _compiled_precision(session) == "bf16" and session.describe()["execution_precision"] == "bf16"
        return
    with pytest.raises(PrecisionMismatch, match="computes in f32, but .* was validated at bf16"):
        OpenVINOBackend().load(bundle, "CPU", {"threads": 1})
    with pytest.raises(NothingRuns) as err:
        open_best(bundle, device="generic-x86-64", backend="openvino", accelerator="CPU")
    c = next(c for c in err.value.plan.candidates if c.bundle is not None)
    assert c.status == SKIPPED and "validated at bf16" in c.reason


def test_a_precision_the_device_cannot_honour_is_skipped_unless_allowed(sb_ov_bundles, tmp_path):
    """A bundle validated at f16 on a CPU that computes f16 requests in another precision (this x86 CPU has no f16
    arithmetic: OpenVINO gives bf16 or f32) is skipped with the reason; --allow-precision lets it run."""
    path = tmp_path / "sb-f16"
    shutil.copytree(sb_ov_bundles["fp16"].path, path)
    doc = json.loads((path / "edge_pose.json").read_text())
    doc["execution_precision"] = "f16"
    (path / "edge_pose.json").write_text(json.dumps(doc))
    with pytest.raises(NothingRuns) as err:
        open_best(path, device="generic-x86-64")
    skipped = [c for c in err.value.plan.candidates if c.bundle is not None]
    assert skipped and all(c.status == SKIPPED and "was validated at f16" in c.reason for c in skipped)
    actual = "bf16" if BF16 else "f32"
    loaded = open_best(path, device="generic-x86-64", allow_precision=[actual])
    assert loaded.session.describe()["execution_precision"] == actual


def test_threads_are_honoured_or_refused_never_clamped(sb_ov_bundles):
    import os

    from edge_pose.backends.base import ThreadsNotHonoured

    too_many = (os.cpu_count() or 1) * 4
    with pytest.raises(ThreadsNotHonoured, match=f"where {too_many} were asked"):
        OpenVINOBackend().load(sb_ov_bundles["fp32"], "CPU", {"threads": too_many})


def test_shared_models_openvino_fp32_match_source_through_pose_estimator(onnx_source, pb_source, sb_ov_bundles,
                                                                         onnx_crops, tmp_path):
    """The done-when: on any CPU, both shared real models' OpenVINO fp32 bundles equal their source within 1e-4
    relative, through the public PoseEstimator (a bf16 CPU used to give 3.6e-2 and 0.52)."""
    from calibration.datasets import load_crops
    from converters.export.openvino import export_openvino
    from edge_pose import PoseEstimator

    pb_bundle = _bundle(pb_source, export_openvino(pb_source, "fp32", tmp_path / "pb"), tmp_path / "cpm-openvino-fp32")
    for source, bundle in ((onnx_source, sb_ov_bundles["fp32"]), (pb_source, pb_bundle)):
        est = PoseEstimator(bundle.path, device="generic-x86-64")
        assert est.describe()["execution_precision"] == "f32"
        crops = load_crops(coco_mini() / "test_coco.json", source.input.size).crops[:6]
        from edge_pose.preprocess import to_model_input

        want = source.run(to_model_input(crops, source.input))
        got = est.heatmaps(crops)
        want = want if want.shape == got.shape else want.transpose(0, 3, 1, 2)  # the source's own layout
        rel = np.abs(got - want).max() / np.abs(want).max()
        assert rel < 1e-4, f"{bundle.path.name}: max rel diff {rel:.2e}"


def test_litert_reports_f32_and_refuses_reduced_precision_models_where_it_would_switch(cpm_bundle, tmp_path):
    from edge_pose.backends.litert import REDUCED_PRECISION_KEY, LiteRTBackend, cpu_execution

    d = LiteRTBackend().load(cpm_bundle, "cpu", {"threads": 1}).describe()
    assert d["execution_precision"] == d["validated_precision"] == "f32"
    assert cpu_execution(cpm_bundle.model_path) == "f32"
    marked = tmp_path / "m.tflite"
    marked.write_bytes(cpm_bundle.model_path.read_bytes() + REDUCED_PRECISION_KEY)
    assert cpu_execution(marked) == "f16"  # XNNPACK may compute such a model in fp16 on fp16-capable CPUs


def test_guard_and_validate_run_the_bundle_as_the_runtime_does(sb_ov_bundles):
    """One code path: the converters open a bundle for judging through the selector, with its precision."""
    from converters.convert import open_as_device

    loaded = open_as_device(sb_ov_bundles["fp32"].path)
    assert loaded.chosen.requested and loaded.session.describe()["execution_precision"] == "f32"
    assert _compiled_precision(loaded.session) == "f32"


def test_old_manifests_without_execution_precision_get_the_registry_default(sb_ov_bundles, tmp_path):
    path = tmp_path / "old"
    shutil.copytree(sb_ov_bundles["int8"].path, path)
    doc = json.loads((path / "edge_pose.json").read_text())
    del doc["execution_precision"]
    (path / "edge_pose.json").write_text(json.dumps(doc))
    assert load_bundle(path).manifest.execution_precision == "f32"

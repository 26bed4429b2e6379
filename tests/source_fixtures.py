"""Session fixtures shared by the source and TFLite export tests: the two real shared models as Sources and real
coco-mini crops in each model's input form. conftest.py registers them once for the whole session."""
from __future__ import annotations

import numpy as np
import pytest
from shared import CPM_PB, SIMPLEBASELINE_ONNX, coco_mini, shared

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@pytest.fixture(scope="session")
def onnx_source():
    from converters.sources import load_source

    return load_source(shared(*SIMPLEBASELINE_ONNX), color="rgb", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       keypoints="coco17")


@pytest.fixture(scope="session")
def pb_source():
    from converters.sources import load_source

    return load_source(shared(*CPM_PB), color="bgr", mean=0, std=1, keypoints="aic14")


def crops_for(source, limit: int = 24) -> np.ndarray:
    """Real person crops from coco-mini ground-truth boxes (plus their mirror images) as the model's input."""
    from calibration.datasets import load_crops
    from edge_pose.preprocess import to_model_input

    crops = load_crops(coco_mini() / "test_coco.json", source.input.size).crops
    crops = np.concatenate([crops, crops[:, :, ::-1]])[:limit]
    return to_model_input(crops, source.input)


@pytest.fixture(scope="session")
def onnx_crops(onnx_source):
    return crops_for(onnx_source)


@pytest.fixture(scope="session")
def pb_crops(pb_source):
    return crops_for(pb_source)


def bundle_from_export(source, result, out):
    """A bundle around an exporter's result, with the manifest the converters write (no guard: tests judge it)."""
    from converters.manifest_build import build_manifest
    from edge_pose.bundle import write_bundle

    manifest = build_manifest(source, result, devices=[], calibration=None, evaluation=None, seed=0)
    return write_bundle(out, manifest, result.files)


@pytest.fixture(scope="session")
def sb_onnx_bundles(onnx_source, onnx_crops, tmp_path_factory):
    """The shared SimpleBaseline-family model as ONNX bundles: fp32, fp16 (float16 graph), int8 (QDQ)."""
    from converters.export.onnx import export_onnx

    root = tmp_path_factory.mktemp("sb-onnx")
    return {p: bundle_from_export(onnx_source, export_onnx(onnx_source, p, root / f"export-{p}",
                                                           calib_inputs=onnx_crops[:16] if p == "int8" else None),
                                  root / f"sb-onnx-{p}") for p in ("fp32", "fp16", "int8")}


@pytest.fixture(scope="session")
def ssd_bundles(tmp_path_factory):
    """The shared SSDLite person detector converted by `edge-pose convert --task detect` (TFLite and OpenVINO, fp32
    and int8, int8 judged out of fold; --allow-degraded since 14 people make the 1-point AP bar noisy from one CPU to
    another); the rows."""
    import json
    import subprocess
    from pathlib import Path

    from shared import coco_mini, shared

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("det") / "bundles"
    mini = coco_mini()
    r = subprocess.run([str(root / ".venv/bin/edge-pose"), "convert",
                        str(shared("models", "ssdlite-mobilenetv2-person", "frozen_inference_graph.pb")),
                        "--task", "detect", "--format", "tflite", "--format", "openvino", "--precision", "fp32",
                        "--precision", "int8", "--calib", str(mini / "test_coco.json"), "--allow-degraded", "--json",
                        "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, {row["bundle"]: row for row in json.loads(r.stdout)}

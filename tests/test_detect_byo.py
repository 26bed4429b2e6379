"""Bring-your-own ONNX detectors (a YOLOX raw head and a YOLOv8-style head, tiny real graphs) become detector
bundles through `edge-pose convert --task detect`, and the runtime's bundles give the boxes their own reference
decoders give (ONNX Runtime and OpenVINO, real frames)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from shared import coco_mini
from test_detect_decoders import (H, STRIDES, W, finish_ref, frame, letterbox_ref, yolov8_model, yolov8_ref,
                                  yolox_model, yolox_ref)

from edge_pose.bundle import load_bundle
from edge_pose.detect.bundle import open_detector

ROOT = Path(__file__).resolve().parents[1]


def _convert(model, tmp_path, *flags):
    import onnx

    src = tmp_path / "tiny.onnx"
    onnx.save(model, str(src))
    out = tmp_path / "bundles"
    r = subprocess.run([str(ROOT / ".venv/bin/edge-pose"), "convert", str(src), "--task", "detect",
                        "--input-size", f"{H},{W}", "--layout", "NCHW", "--resize", "letterbox", *flags,
                        "--calib", str(coco_mini() / "test_coco.json"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return sorted(p for p in out.iterdir() if p.is_dir())


@pytest.mark.parametrize("head", ["yolox", "yolov8"])
def test_byo_onnx_detector_bundles_decode_like_their_reference(head, tmp_path):
    if head == "yolox":
        flags = ["--head", "yolox", "--strides", ",".join(map(str, STRIDES)), "--color", "bgr", "--pad", "corner"]
        model, ref, pad = yolox_model(), yolox_ref, "corner"
        spec_ref = {"score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100, "person_class": 0}
    else:
        flags = ["--head", "yolov8", "--color", "rgb", "--std", "255,255,255", "--pad", "center", "--person-class",
                 "1"]
        model, ref, pad = yolov8_model(), yolov8_ref, "center"
        spec_ref = {"score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100, "person_class": 1}
    bundles = _convert(model, tmp_path, *flags)
    assert [b.name.rsplit("-", 2)[1] for b in bundles] == ["onnx", "openvino"]
    img = frame()
    for path in bundles:
        m = load_bundle(path).manifest
        assert m.task == "detect" and m.detect["head"] == head and m.fidelity["passed"]
        assert m.fidelity["matched_fraction"] >= 0.99  # boxes agree with the source (ONNX Runtime, same decoder)
        det = open_detector(path, device="generic-x86-64")
        got = det.detect(img)
        batch, _ = det.prepare(img)
        raw = det.session.run(batch)[0]
        spec = {**m.detect, **spec_ref}
        want = finish_ref(ref(raw, spec), spec, img.shape[:2], letterbox_ref(*img.shape[:2], pad))
        assert len(want) >= 3
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-2)


def test_byo_detector_needs_its_facts_in_one_line(tmp_path):
    import onnx

    src = tmp_path / "tiny.onnx"
    onnx.save(yolox_model(), str(src))
    r = subprocess.run([str(ROOT / ".venv/bin/edge-pose"), "convert", str(src), "--task", "detect", "--calib",
                        str(coco_mini() / "test_coco.json"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--head yolox|yolov8|end2end" in r.stderr and "Traceback" not in r.stderr

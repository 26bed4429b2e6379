"""Ready detector files packaged as bundles without conversion: a .tflite (a tiny YOLOv8-style Keras head, written
by TensorFlow's converter, fp32 and int8) and an OpenVINO .xml (the tiny YOLOX ONNX read by OpenVINO). Each bundle
holds the file as given, reads its precision from its tensors, gives the boxes the head's reference decoder gives
on the file's own raw output, and says it was run, not judged (there is no source to compare with)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from shared import coco_mini
from test_detect_decoders import (C, H, STRIDES, W, finish_ref, frame, letterbox_ref, yolov8_ref, yolox_model,
                                  yolox_ref)

from edge_pose.bundle import load_bundle
from edge_pose.detect.bundle import open_detector

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100}


def _tiny_yolov8_tflite(path: Path, int8: bool) -> None:
    """[1, 4 + C, A] from one stride-8 conv, sigmoid-scaled to input pixels as the ONNX test head is."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    inp = tf.keras.Input((H, W, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(4 + C, 8, strides=8)(inp)
    x = tf.keras.layers.Reshape(((H // 8) * (W // 8), 4 + C))(x)
    x = tf.keras.layers.Permute((2, 1))(x)
    x = tf.keras.layers.Activation("sigmoid")(x)
    scale = tf.constant(np.array([W, H, W / 2, H / 2] + [1.0] * C, np.float32).reshape(1, -1, 1))
    x = tf.keras.layers.Lambda(lambda t: t * scale)(x)
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, x))
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.random((1, H, W, 3), np.float32)] for _ in range(8))
    path.write_bytes(conv.convert())


def _package(src: Path, out: Path, *flags) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), "convert", str(src), "--task", "detect",
                           "--input-size", f"{H},{W}", "--resize", "letterbox", *flags,
                           "--calib", str(coco_mini() / "test_coco.json"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)


def _check(bundle_dir: Path, src: Path, ref, pad: str, precision: str, spec_extra: dict) -> None:
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    assert (m.task, m.precision) == ("detect", precision)
    assert m.fidelity["judged"] is False and m.fidelity["passed"] is None and not m.degraded
    assert (bundle_dir / m.model_file).read_bytes() == src.read_bytes()  # the file as given, not converted
    det = open_detector(bundle_dir, device="generic-x86-64")
    img = frame()
    got = det.detect(img)
    raw = det.session.run(det.prepare(img)[0])[0]
    spec = {**m.detect, **SPEC, **spec_extra}
    want = finish_ref(ref(raw, spec), spec, img.shape[:2], letterbox_ref(*img.shape[:2], pad))
    assert len(want) >= 2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-2)


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_ready_tflite_detector_is_packaged_as_given(int8, tmp_path):
    src = tmp_path / "tiny.tflite"
    _tiny_yolov8_tflite(src, int8)
    r = _package(src, tmp_path / "out", "--head", "yolov8", "--layout", "NHWC", "--color", "rgb",
                 "--std", "255,255,255", "--pad", "center")
    assert r.returncode == 0, r.stderr[-3000:]
    (bundle_dir,) = (tmp_path / "out").iterdir()
    assert bundle_dir.name == f"tiny-tflite-{'int8' if int8 else 'fp32'}"
    _check(bundle_dir, src, yolov8_ref, "center", "int8" if int8 else "fp32", {"person_class": 0})


def test_ready_openvino_detector_is_packaged_as_given(tmp_path):
    import onnx
    import openvino as ov

    onnx_path, xml = tmp_path / "tiny.onnx", tmp_path / "tiny.xml"
    onnx.save(yolox_model(), str(onnx_path))
    model = ov.convert_model(str(onnx_path))
    model.reshape([1, 3, H, W])
    ov.save_model(model, str(xml), compress_to_fp16=False)
    r = _package(xml, tmp_path / "out", "--head", "yolox", "--layout", "NCHW", "--strides",
                 ",".join(map(str, STRIDES)), "--color", "bgr", "--pad", "corner")
    assert r.returncode == 0, r.stderr[-3000:]
    (bundle_dir,) = (tmp_path / "out").iterdir()
    assert bundle_dir.name == "tiny-openvino-fp32" and (bundle_dir / "model.bin").is_file()
    _check(bundle_dir, xml, yolox_ref, "corner", "fp32", {"person_class": 0})

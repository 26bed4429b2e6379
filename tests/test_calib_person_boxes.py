"""Image folders and videos are calibrated on person boxes: OpenCV HOG by default, a detect bundle when given
(--detector BUNDLE), the whole frame only when asked; convert says how many crops it got from how many images."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from hourglass_graph import build_hourglass_pb
from shared import coco_mini, shared

ROOT = Path(__file__).resolve().parents[1]
SIZE = (256, 192)


def _cli(*args, cwd=None):
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """coco-mini's four photos (14 people) as a plain image folder."""
    out = tmp_path_factory.mktemp("frames")
    for jpg in sorted(coco_mini().glob("*.jpg")):
        shutil.copy(jpg, out / jpg.name)
    return out


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """The shared SSDLite person detector as a TFLite fp32 detect bundle, converted by the CLI."""
    out = tmp_path_factory.mktemp("detector")
    r = _cli("convert", str(shared("models", "ssdlite-mobilenetv2-person", "frozen_inference_graph.pb")), "--task",
             "detect", "--format", "tflite", "--precision", "fp32", "--calib", str(coco_mini() / "test_coco.json"),
             "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_folder_with_a_detector_bundle_gives_one_crop_per_person(frames, detector, capfd):
    from calibration.datasets import load_crops

    crops = load_crops(frames, SIZE, detector=str(detector), min_box_score=0.3)
    said = capfd.readouterr().err
    assert len(crops) > 4 and len(set(crops.image_paths)) <= 4  # several people per photo, not one crop per photo
    assert crops.box_scores.min() >= 0.3
    assert f"{len(crops)} person crop(s) from 4 image(s) (boxes: detector ssdlite" in said
    assert all(w < 0.9 * cv2.imread(p).shape[1] for (_, _, w, _), p in zip(crops.boxes, crops.image_paths))


def test_folder_default_is_hog_and_whole_only_when_asked(frames, capfd):
    from calibration.datasets import load_crops

    hog = load_crops(frames, SIZE)
    said = capfd.readouterr().err
    assert "boxes: OpenCV HOG (the default" in said and "person crop(s) from 4 image(s)" in said
    assert hog.box_scores.min() >= 0.0 and len(hog) >= 1
    whole = load_crops(frames, SIZE, detector="whole")
    assert len(whole) == 4 and "boxes: whole frame" in capfd.readouterr().err
    h, w = cv2.imread(whole.image_paths[0]).shape[:2]
    np.testing.assert_allclose(whole.boxes[0], [0, 0, w, h])


def test_bad_detector_is_one_line(frames, tmp_path):
    from calibration.cropset import CalibrationDataError
    from calibration.datasets import load_crops

    with pytest.raises(CalibrationDataError, match="--detector takes whole, hog or a detect bundle"):
        load_crops(frames, SIZE, detector=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match="not a usable detect bundle") as err:
        load_crops(frames, SIZE, detector=str(tmp_path / "empty"))
    assert "\n" not in str(err.value)


def test_convert_on_a_folder_uses_the_detector_and_says_so(frames, detector, tmp_path):
    pb = build_hourglass_pb(tmp_path / "hourglass.pb")
    r = _cli("convert", str(pb), "--color", "bgr", "--mean", "0", "--std", "1", "--keypoints", "aic14", "--format",
             "tflite", "--precision", "fp32", "--calib", str(frames), "--detector", str(detector), "--out", "b",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [ln for ln in r.stderr.splitlines() if "person crop(s) from 4 image(s)" in ln]
    assert len(line) == 1 and "detector ssdlite-mobilenetv2-person-tflite-fp32" in line[0]
    v = _cli("validate", "b/hourglass-tflite-fp32", "--reference", str(pb), "--data", str(frames), "--detector",
             str(detector), cwd=tmp_path)
    assert v.returncode == 0, v.stderr[-2000:]
    assert "person crop(s) from 4 image(s) (boxes: detector ssdlite" in v.stderr

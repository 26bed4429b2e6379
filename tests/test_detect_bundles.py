"""Detector bundles end to end: `edge-pose convert --task detect` on the shared SSDLite (the same manifest, hashing,
atomic writes, guard and inspect as pose bundles), the runtime's selector and backends running them, and predict
composing detector and pose on coco-mini's real people (keypoint AP through pycocotools)."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from shared import coco_mini

from edge_pose.bundle import BundleError, load_bundle

ROOT = Path(__file__).resolve().parents[1]
SSD = ("models", "ssdlite-mobilenetv2-person", "frozen_inference_graph.pb")


def _cli(*args, timeout=900):
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def detectors(ssd_bundles):
    return ssd_bundles


def test_convert_task_detect_writes_guarded_detector_bundles(detectors):
    out, rows = detectors
    assert sorted(p.name for p in out.iterdir()) == sorted(rows)
    for name, row in rows.items():
        m = load_bundle(out / name).manifest
        assert m.task == "detect" and m.output is None and m.detect["head"] == "ssd"
        assert m.detect["anchors_file"] in m.files and len(m.detect["outputs"]) == 2
        assert m.fidelity["ap_source"] == pytest.approx(row["ap_source"]) and "AP" in m.fidelity
        if m.precision == "fp32":  # float conversions give the source's boxes
            assert m.fidelity["passed"] and abs(m.fidelity["ap_drop"]) < 0.1
        assert m.fidelity["recall_drop"] <= 1.0  # recall at IoU 0.5 holds in int8 too
        assert m.execution_precision == "f32"


def test_detector_bundle_runs_on_the_runtime_and_finds_the_people(detectors):
    import cv2

    from edge_pose.detect.bundle import open_detector

    out, _ = detectors
    image = cv2.imread(str(coco_mini() / "000000000785.jpg"))
    for fmt in ("tflite", "openvino"):
        det = open_detector(out / f"ssdlite-mobilenetv2-person-{fmt}-fp32", device="generic-x86-64")
        boxes = det.detect(image)
        assert boxes.ndim == 2 and boxes.shape[1] == 5 and len(boxes) >= 1
        x, y, w, h, s = boxes[0]  # the skier, as the ground truth has her (280.8, 44.7, 218.7, 346.7)
        assert abs(x - 280.8) < 20 and abs(y - 44.7) < 20 and abs(w - 218.7) < 30 and abs(h - 346.7) < 30
        assert det.loaded.session.describe()["execution_precision"] == "f32"


def test_a_detector_is_not_a_pose_candidate_and_anchors_are_checked(detectors, tmp_path):
    out, _ = detectors
    with pytest.raises(BundleError, match="a detect bundle, not a pose bundle"):
        from edge_pose.select import open_best

        open_best(out / "ssdlite-mobilenetv2-person-tflite-fp32")
    broken = tmp_path / "b"
    shutil.copytree(out / "ssdlite-mobilenetv2-person-tflite-fp32", broken)
    doc = json.loads((broken / "edge_pose.json").read_text())
    del doc["detect"]["anchors_file"]
    (broken / "edge_pose.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="an ssd head needs anchors_file"):
        load_bundle(broken)


def _keypoint_ap(gt_path: Path, results_path: Path) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(results_path)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_predict_with_int8_detector_and_int8_pose_reaches_the_keypoint_ap_bar(detectors, onnx_source, onnx_crops,
                                                                              tmp_path):
    """The int8 SSD and an int8 SimpleBaseline-family bundle, composed by predict on coco-mini: keypoint AP >= 0.53
    (the float reference, the SSD's original graph boxes, is 0.558; whole-frame boxes give 0.000)."""
    from converters.export.openvino import export_openvino
    from source_fixtures import bundle_from_export

    out, _ = detectors
    pose = bundle_from_export(onnx_source, export_openvino(onnx_source, "int8", tmp_path / "x",
                                                           calib_inputs=onnx_crops), tmp_path / "sb-openvino-int8")
    mini = coco_mini()
    r = _cli("predict", str(pose.path), str(mini), "--detector", str(out / "ssdlite-mobilenetv2-person-tflite-int8"),
             "--allow-degraded", "--no-draw", "--out", str(tmp_path / "o"), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    detect_ms = re.search(r"per stage .*\bdetect (\d+\.\d)", r.stdout)  # the detector's time counted in the line
    assert detect_ms and float(detect_ms.group(1)) > 0, r.stdout
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["runs"]["detector"]["bundle"].endswith("tflite-int8") and summary["people"] >= 10
    ap = _keypoint_ap(mini / "test_coco.json", tmp_path / "o" / "keypoints.json")
    print(f"keypoint AP with int8 detector + int8 pose: {ap:.3f}")
    assert ap >= 0.53


def test_a_detector_beside_the_pose_bundles_is_found_and_used(detectors, simplebaseline_ov_bundle, tmp_path):
    from edge_pose import PoseEstimator

    out, _ = detectors
    both = tmp_path / "bundles"
    shutil.copytree(simplebaseline_ov_bundle.path, both / "sb-openvino-fp32")
    shutil.copytree(out / "ssdlite-mobilenetv2-person-openvino-fp32", both / "ssd-openvino-fp32")
    import cv2

    est = PoseEstimator(both, device="generic-x86-64")
    assert est.detector is not None and est.bundle.path.name == "sb-openvino-fp32"
    image = cv2.imread(str(coco_mini() / "000000040083.jpg"))
    people = est.predict(image)
    assert len(people) >= 2 and est.last_timings["detect"] > 0  # several people, not one whole-frame skeleton
    frame = est.predict(image, boxes=[[0, 0, image.shape[1], image.shape[0]]])  # boxes= still overrides
    assert len(frame) == 1
    assert np.isfinite(np.stack([p.keypoints for p in people])).all()
    r = _cli("explain", str(both), "--device", "generic-x86-64")
    assert r.returncode == 0 and "detector:" in r.stdout, r.stdout + r.stderr


def test_detection_every_n_frames_carries_boxes_from_the_last_keypoints(detectors, simplebaseline_ov_bundle):
    """predict_next(frame, detect_every=3): the detector on frames 0 and 3, boxes carried from the previous people
    on frames 1 and 2; the same people are found, close to where detecting every frame puts them."""
    import cv2

    from edge_pose import PoseEstimator

    out, _ = detectors
    image = cv2.imread(str(coco_mini() / "000000040083.jpg"))
    est = PoseEstimator(simplebaseline_ov_bundle.path, device="generic-x86-64",
                        detector=out / "ssdlite-mobilenetv2-person-openvino-fp32")
    every = est.predict(image)
    ran = []
    for i in range(4):
        frame = np.ascontiguousarray(np.roll(image, 2 * i, axis=1))  # people move 2 px a frame
        people = est.predict_next(frame, detect_every=3)
        ran.append(est.last_timings["detected"])
        assert len(people) >= len([p for p in every if (p.scores >= 0.3).sum() >= 3]) - 1
    assert ran == [True, False, False, True]
    assert est.last_timings["detect"] > 0 and est.last_timings["carry"] == 0.0

"""int8 detector bundles are judged on images they were not calibrated on: cross-calibration folds by image (the
session's `convert --task detect` on coco-mini), or the user's own frames with the COCO file only judging; the
mitigation ladder stops at the first rung within the bar."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from shared import coco_mini, shared

from converters.detect.folds import Fold, check_disjoint, cross_folds
from converters.detect.ladder import climb, closest
from converters.errors import ConversionError
from edge_pose.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]
SSD = ("models", "ssdlite-mobilenetv2-person", "frozen_inference_graph.pb")


def _cli(*args, timeout=600):
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cross_folds_never_judge_an_image_they_calibrate_on():
    ids = [197388, 785, 40083, 196141, 5]
    for k in (2, 3, 4, 5, 9):
        folds = cross_folds(ids, k)
        assert len(folds) == min(k, len(ids))
        judged = [i for f in folds for i in f.judged]
        assert sorted(judged) == sorted(ids)  # every image judged exactly once
        for f in folds:
            assert not set(f.calibrated_on) & set(f.judged)
            assert sorted(f.calibrated_on + f.judged) == sorted(ids)  # calibrated on all the others
    with pytest.raises(ConversionError, match="fold 0 would judge image"):
        check_disjoint([Fold((1, 2), (2,)), Fold((2,), (1,))], [1, 2])
    with pytest.raises(ConversionError, match="every image exactly once"):
        check_disjoint([Fold((2,), (1,))], [1, 2])
    with pytest.raises(ConversionError, match="at least 2 annotated images"):
        cross_folds([785])
    with pytest.raises(ConversionError, match="--folds 1: cross-calibration needs at least 2 folds"):
        cross_folds(ids, 1)


def test_each_fold_model_is_built_from_frames_without_the_images_it_judges():
    """The pixels handed to each fold's build (what calibration_inputs turns into calibration tensors) hold none of
    the images that fold's model then detects, nor their mirror images."""
    import hashlib

    import numpy as np

    from converters.detect.folds import judging
    from converters.detect.ladder import out_of_fold

    def digest(img):
        return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()

    j = judging(coco_mini() / "test_coco.json", log=lambda m: None)
    assert j.scheme == "cross-calibration" and not j.bundle_is_judged and len(j.bundle_frames) == 4
    built, detected = [], []

    class Recorder:  # what the fold's int8 model is asked to detect
        def detect(self, img):
            detected[-1].add(digest(img))
            return np.zeros((0, 5), np.float32)

    def build(options, frames, tag):
        built.append({digest(f) for f in frames} | {digest(f[:, ::-1]) for f in frames})
        detected.append(set())
        return Recorder(), None

    dets, _ = out_of_fold(j, build, {}, "t", log=lambda m: None)
    assert sorted(dets) == sorted(j.frames) and len(built) == 4
    for calibrated, judged in zip(built, detected):
        assert len(judged) == 1 and not calibrated & judged
        assert len(calibrated) == 6  # the other 3 images and their mirrors


def test_the_ladder_stops_at_the_first_rung_within_the_bar():
    drops = {"a": 2.5, "b": 0.4, "c": 0.1}
    judged = []

    def judge(label, options):
        judged.append(label)
        return {"ap_drop": drops[label]}, None

    def check(fig):
        return [] if fig["ap_drop"] <= 1.0 else ["drop"]

    attempts = climb([(k, {}) for k in drops], judge, check, log=lambda m: None)
    assert judged == ["a", "b"] and closest(attempts).label == "b"  # "c" is better but never tried
    attempts = climb([("a", {}), ("a", {})], judge, check, log=lambda m: None)
    assert len(attempts) == 2 and closest(attempts).missed  # none passes: the closest, marked as missing


def test_int8_bundles_record_out_of_fold_judging(ssd_bundles):
    out, rows = ssd_bundles
    ids = sorted(im["id"] for im in json.loads((coco_mini() / "test_coco.json").read_text())["images"])
    for name in rows:
        m = load_bundle(out / name).manifest
        ev = m.fidelity["evaluation"]
        assert ev["judged_images"] == ids
        assert m.fidelity["agreement"]["reference_boxes"] > 0  # box agreement with the source, reported beside
        if m.precision != "int8":
            assert m.fidelity["agreement"]["matched_fraction"] == 1.0
            continue
        assert ev["scheme"] == "cross-calibration" and len(ev["folds"]) == 4
        assert sorted(i for f in ev["folds"] for i in f["judged"]) == ids
        for f in ev["folds"]:
            assert not set(f["calibrated_on"]) & set(f["judged"]) and len(f["calibrated_on"]) == 3
        assert ev["bundle_calibrated_on"] == ids and "in_sample" in m.fidelity  # told apart from the judge
        attempts = m.fidelity["attempts"]
        assert all(a["missed"] for a in attempts[:-1])  # climbed only while missing
        assert m.fidelity["mitigation"] == (attempts[-1]["mitigation"] if m.fidelity["passed"] else
                                            min(attempts, key=lambda a: -a["ap"])["mitigation"])
        print(name, m.fidelity["mitigation"], f"out-of-fold AP {m.fidelity['AP']:.1f}",
              f"(source {m.fidelity['ap_source']:.1f}, in-sample {m.fidelity['in_sample']['AP']:.1f})")


def test_separate_calibration_frames_leave_out_judged_images(tmp_path):
    """--calib FRAMES --eval COCO: a judged image (or its mirror) among the frames is not calibrated on."""
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(shared("data", "astronaut.png"), frames / "astronaut.png")
    shutil.copy(coco_mini() / "000000000785.jpg", frames / "copy_of_785.jpg")
    img = cv2.imread(str(coco_mini() / "000000040083.jpg"))
    cv2.imwrite(str(frames / "mirror_of_40083.png"), img[:, ::-1])  # png: the same pixels after reading
    r = _cli("convert", str(shared(*SSD)), "--task", "detect", "--format", "tflite", "--precision", "int8",
             "--calib", str(frames), "--eval", str(coco_mini() / "test_coco.json"), "--allow-degraded", "--json",
             "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 calibration frame(s) are judged images: left out of calibration" in r.stderr
    m = load_bundle(tmp_path / "out" / "ssdlite-mobilenetv2-person-tflite-int8").manifest
    ev = m.fidelity["evaluation"]
    assert ev["scheme"] == "separate frames" and ev["folds"] == [
        {"calibrated_on": ["astronaut.png"], "judged": [785, 40083, 196141, 197388]}]
    assert "in_sample" not in m.fidelity and m.provenance["calibration"]["frames"] == 2  # the judged model itself
    assert m.fidelity["recall_drop"] <= 1.0


def test_calibration_frames_that_are_not_there_get_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for calib, says in ((tmp_path / "empty", "no images"), (tmp_path / "nothing", "not found")):
        r = _cli("convert", str(shared(*SSD)), "--task", "detect", "--format", "tflite", "--precision", "int8",
                 "--calib", str(calib), "--eval", str(coco_mini() / "test_coco.json"), "--out", str(tmp_path / "o"))
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert str(calib) in r.stderr and says in r.stderr, r.stderr
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_calibration_frames_from_a_video_an_image_or_a_folder(tmp_path):
    import cv2
    import numpy as np

    from converters.detect.folds import read_calib_frames

    img = cv2.resize(cv2.imread(str(shared("data", "astronaut.png"))), (64, 48))
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(25):
        writer.write(np.roll(img, i, axis=1))
    writer.release()
    frames = read_calib_frames(video, limit=64, every_n=10)
    assert [n for n, _ in frames] == ["walk.avi#0", "walk.avi#10", "walk.avi#20"]
    assert frames[0][1].shape == (48, 64, 3)
    assert len(read_calib_frames(video, limit=2, every_n=10)) == 2
    assert [n for n, _ in read_calib_frames(shared("data", "astronaut.png"))] == ["astronaut.png"]
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "notes.txt").write_text("hello")
    for path, says in ((tmp_path / "broken.mp4", "broken.mp4: corrupt or unreadable video"),
                       (tmp_path / "notes.txt", "notes.txt: not an image folder, an image or a video")):
        with pytest.raises(ConversionError, match=says):
            read_calib_frames(path)


def test_large_coco_files_stay_bounded():
    """At most eval_limit images judge and at most `limit` frames calibrate each model, evenly spread."""
    from converters.detect.folds import judging, spread

    assert spread(range(10), 4) == [0, 3, 6, 9] and spread([1, 2], 5) == [1, 2]
    said = []
    j = judging(coco_mini() / "test_coco.json", limit=2, eval_limit=3, log=said.append)
    assert len(j.frames) == 3 and any("judging on 3 of the 4 images" in m for m in said)
    assert len(j.folds) == 3 and all(len(f.calibrated_on) == 2 for f in j.folds)
    assert [len(ff) for ff in j.fold_frames] == [2, 2, 2] and len(j.bundle_frames) == 2
    assert j.record()["bundle_calibrated_on"] == list(j.bundle_ids) and len(j.bundle_ids) == 2
    for f in j.folds:
        assert not set(f.calibrated_on) & set(f.judged)


def test_frames_without_ground_truth_judge_by_agreement_out_of_fold(tmp_path):
    """--calib FRAMES alone: no annotations, so each frame is detected by an int8 model calibrated on the other fold's
    frames and judged by how many of the source's confident boxes it finds again, and how tightly."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("000000000785.jpg", "000000196141.jpg"):
        shutil.copy(coco_mini() / name, frames / name)
    shutil.copy(shared("data", "astronaut.png"), frames / "astronaut.png")
    r = _cli("convert", str(shared(*SSD)), "--task", "detect", "--format", "tflite", "--precision", "fp32",
             "--precision", "int8", "--calib", str(frames), "--folds", "2", "--out", str(tmp_path / "o"),
             "--allow-degraded")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "by agreement with the source (no ground truth)" in r.stderr
    for precision in ("fp32", "int8"):
        m = load_bundle(tmp_path / "o" / f"ssdlite-mobilenetv2-person-tflite-{precision}").manifest
        fid = m.fidelity
        assert "AP" not in fid and fid["evaluation"]["ground_truth"] is False
        agree = fid["agreement"]
        assert agree["reference_boxes"] >= 3 and agree["candidate_min_score"] < agree["min_score"]
        assert fid["passed"] == (agree["matched_fraction"] >= 0.9 and agree["mean_best_iou"] >= 0.8)
        if precision == "fp32":  # the float bundle is the source's graph: the same boxes
            assert agree["matched_fraction"] == 1.0 and agree["mean_best_iou"] > 0.99
        else:
            folds = fid["evaluation"]["folds"]
            assert len(folds) == 2 and sorted(sum((f["judged"] for f in folds), [])) == [0, 1, 2]
            check_disjoint([Fold(tuple(f["calibrated_on"]), tuple(f["judged"])) for f in folds], [0, 1, 2])
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(shared("data", "astronaut.png"), one / "astronaut.png")
    r = _cli("convert", str(shared(*SSD)), "--task", "detect", "--format", "tflite", "--precision", "int8",
             "--calib", str(one), "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "at least 2 frames" in r.stderr, r.stderr[-2000:]

"""The streaming pipeline (edge_pose.stream) on a real bundle and real frames: the same people as the serial
PoseEstimator.predict / predict_next, no thread left behind, a read error as one line. Speed is
benchmarks/pipeline.py's business, not a test's."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared import coco_mini

from edge_pose import PoseEstimator
from edge_pose.boxes import CocoBoxes
from edge_pose.errors import EdgePoseError
from edge_pose.preprocess import crop_people, to_model_input
from edge_pose.frames import ImageFrames, VideoFrames
from edge_pose.stream import PoseStream

CLI = [str(Path(sys.executable).with_name("edge-pose"))]


def _video(path: Path, hold: int = 3, size=(360, 480)) -> Path:
    """coco-mini's four photos, each held `hold` frames while the view pans (MJPG: decodes the same everywhere)."""
    h, w = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for image_path in sorted(coco_mini().glob("*.jpg")):
        big = cv2.resize(cv2.imread(str(image_path)), (w + 4 * hold, h + 2 * hold))
        for i in range(hold):
            out.write(np.ascontiguousarray(big[2 * i:2 * i + h, 4 * i:4 * i + w]))
    out.release()
    return path


def _stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("edge-pose-stream")]


def _same_people(a, b) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.keypoints, q.keypoints)
        np.testing.assert_array_equal(p.scores, q.scores)
        np.testing.assert_array_equal(p.box, q.box)
        assert p.box_score == q.box_score


def _serial_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return _video(tmp_path_factory.mktemp("stream") / "mini.avi")


def test_out_buffers_give_the_same_crops_and_tensors(cpm_bundle):
    image = cv2.imread(str(coco_mini() / "000000196141.jpg"))
    boxes = np.array([[10, 20, 120, 250], [300, 40, 90, 200], [-30, -30, 100, 100]], np.float32)
    spec = cpm_bundle.manifest.input
    plain = crop_people(image, boxes, spec.size)
    crops = np.full((5, *spec.size, 3), 7, np.uint8)
    into = crop_people(image, boxes, spec.size, out=crops)
    assert np.shares_memory(into.images, crops) and np.array_equal(into.images, plain.images)
    x = to_model_input(plain.images, spec)
    buf = np.zeros((4, *x.shape[1:]), x.dtype)
    got = to_model_input(plain.images, spec, out=buf)
    assert np.shares_memory(got, buf) and np.array_equal(got, x)
    with pytest.raises(EdgePoseError, match="crop buffer must be"):
        crop_people(image, boxes, spec.size, out=np.zeros((2, *spec.size, 3), np.uint8))


@pytest.mark.parametrize("flip", [False, True])
def test_stream_finds_exactly_the_serial_people_on_every_frame(cpm_bundle, video, flip):
    est = PoseEstimator(cpm_bundle.path, flip=flip)
    serial = [est.predict(frame) for frame in _serial_frames(video)]
    with PoseStream(est, VideoFrames(video), depth=2) as stream:
        items = [(item.index, item.people, item.image.copy()) for item in stream]
    assert [i for i, _, _ in items] == list(range(len(serial))) and len(serial) == 12
    for (_, people, image), expected, frame in zip(items, serial, _serial_frames(video)):
        assert np.array_equal(image, frame)  # the ring buffer held this frame while it was handed out
        _same_people(people, expected)
    assert not _stream_threads()


def test_stream_with_a_box_file_grows_its_buffers_for_many_people(cpm_bundle):
    image_path = coco_mini() / "000000196141.jpg"  # five people in the detection file
    est = PoseEstimator(cpm_bundle.path)
    source = CocoBoxes(coco_mini() / "test_coco_det_AP_H_56.json")
    boxes = source.boxes(cv2.imread(str(image_path)), image_path.name)
    assert len(boxes) > 2
    expected = est.predict(cv2.imread(str(image_path)), boxes)
    with PoseStream(est, ImageFrames(image_path, count=3), boxes=source, max_people=1) as stream:
        got = [item.people for item in stream]
    assert len(got) == 3
    for people in got:
        _same_people(people, expected)


def test_stream_with_a_detector_every_three_frames_equals_predict_next(cpm_bundle, ssd_bundles, video):
    det_dir, _ = ssd_bundles
    est = PoseEstimator(cpm_bundle.path, detector=det_dir / "ssdlite-mobilenetv2-person-tflite-fp32")
    serial = []
    for frame in _serial_frames(video):
        serial.append(est.predict_next(frame, 3))
        serial[-1] = (serial[-1], est.last_timings["detected"])
    with PoseStream(est, VideoFrames(video), detect_every=3) as stream:
        items = [(item.people, item.timings) for item in stream]
    assert len(items) == len(serial)
    assert sum(d for _, d in serial) >= 4 and sum(len(p) for p, _ in serial) > len(serial)  # several people
    for (people, timings), (expected, detected) in zip(items, serial):
        _same_people(people, expected)
        assert (timings["detect"] > 0) == detected and (detected or timings["carry"] > 0)
    assert not _stream_threads()


def test_leaving_a_stream_early_stops_its_threads(cpm_bundle, video):
    est = PoseEstimator(cpm_bundle.path)
    stream = PoseStream(est, VideoFrames(video, loop=True), depth=3)
    for item in stream:
        assert _stream_threads()
        if item.index == 4:
            break
    stream.close()
    assert not _stream_threads()
    with pytest.raises(EdgePoseError, match="already closed"):
        stream.start()


def test_a_read_error_mid_stream_reaches_the_caller_as_one_line(cpm_bundle, tmp_path):
    image = tmp_path / "still.jpg"
    image.write_bytes((coco_mini() / "000000000785.jpg").read_bytes())
    est = PoseEstimator(cpm_bundle.path)
    seen = 0
    with pytest.raises(EdgePoseError) as caught:
        with PoseStream(est, ImageFrames(image)) as stream:
            for item in stream:
                seen += 1
                if seen == 2:
                    image.write_bytes(b"\xff\xd8\xff\xe0 truncated")  # the camera's file goes bad mid-stream
                assert seen < 200, "the bad frame never reached the caller"
    message = str(caught.value)
    assert "still.jpg" in message and "\n" not in message and seen >= 2
    assert not _stream_threads()


def test_a_box_function_error_stops_the_stream_with_its_line(cpm_bundle, video):
    def boxes(image, index):
        if index == 3:
            raise ValueError("box service\nwent away")
        return None

    with pytest.raises(EdgePoseError, match=r"prepare failed: ValueError: box service went away$"):
        with PoseStream(PoseEstimator(cpm_bundle.path), VideoFrames(video), boxes=boxes) as stream:
            for _ in stream:
                pass
    assert not _stream_threads()


def test_bench_pipeline_on_an_unreadable_video_is_one_line(cpm_bundle, tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    proc = subprocess.run(CLI + ["bench", str(cpm_bundle.path), "--runs", "2", "--warmup", "0",
                                 "--pipeline", str(bad)], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.strip().splitlines() if "error" in line]
    assert proc.returncode == 2 and len(lines) == 1 and "broken.avi" in lines[0] and "Traceback" not in proc.stderr


def test_frames_and_model_inputs_are_reused_buffers(cpm_bundle, video):
    est = PoseEstimator(cpm_bundle.path)
    stream = PoseStream(est, VideoFrames(video, loop=True), depth=2)
    frames, inputs = set(), set()
    for item in stream:
        frames.add(item.image.ctypes.data)
        inputs.update(buf.x.ctypes.data for buf in stream._inputs)
        if item.index == 40:
            break
    stream.close()
    assert len(frames) <= 2 * 2 + 3  # the ring's slots, whatever the number of frames
    assert len(inputs) == len(stream._inputs)  # one person a frame never outgrows the preallocated rows


def test_predict_streams_a_video_detecting_every_third_frame_and_times_every_stage(cpm_bundle, ssd_bundles, video,
                                                                                    tmp_path, capsys):
    """`edge-pose predict VIDEO --detect-every 3` gives predict_next's people frame by frame; its summary and timing
    line count every stage, the box source's and the drawing's included."""
    import json

    from edge_pose.cli.main import main
    from edge_pose.cli.predict import STAGES

    det_dir, _ = ssd_bundles
    detector = det_dir / "ssdlite-mobilenetv2-person-tflite-fp32"
    est = PoseEstimator(cpm_bundle.path, detector=detector)
    expected = [est.predict_next(frame, 3) for frame in _serial_frames(video)]
    assert main(["predict", str(cpm_bundle.path), str(video), "--detector", str(detector), "--detect-every", "3",
                 "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "keypoints.json").read_text())
    assert len(results) == sum(len(p) for p in expected) > len(expected)
    got = iter(results)
    for index, people in enumerate(expected):
        for person in people:
            r = next(got)
            assert r["image_id"] == index
            np.testing.assert_allclose(np.reshape(r["keypoints"], (-1, 3))[:, :2], person.keypoints, atol=1e-3)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    ms = summary["ms_per_frame"]
    assert set(ms) == set(STAGES) and all(ms[k] > 0 for k in ("read", "detect", "carry", "crop", "infer", "draw"))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "ms per frame end to end" in line and "overlap inference" in line and all(f"{k} " in line for k in STAGES)

    assert main(["predict", str(cpm_bundle.path), str(video), "--boxes", "hog", "--no-draw",
                 "--out", str(tmp_path / "hog")]) == 0
    assert json.loads((tmp_path / "hog" / "summary.json").read_text())["ms_per_frame"]["boxes"] > 0
    assert main(["predict", str(cpm_bundle.path), str(video), "--detect-every", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--detect-every 0: must be at least 1" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert not _stream_threads()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice levels are Linux's")
def test_the_helper_threads_yield_the_cores_to_inference(cpm_bundle, video):
    """The reader and prepare threads run at a raised nice level (inference's threads get the cores first); the
    caller's thread keeps its own."""
    import os

    def nice(tid: int) -> int:  # field 19 of /proc/<pid>/task/<tid>/stat, after the parenthesised name
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[16])

    est = PoseEstimator(cpm_bundle.path)
    caller = os.getpriority(os.PRIO_PROCESS, 0)
    for wanted in (10, 0):
        with PoseStream(est, VideoFrames(video, loop=True), helper_nice=wanted) as stream:
            item = stream.next_item()
            assert item is not None and set(stream.helper_ids) == {"read", "prepare"}
            assert [nice(t) for t in stream.helper_ids.values()] == [max(wanted, caller)] * 2
            assert nice(threading.get_native_id()) == caller

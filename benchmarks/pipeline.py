"""End-to-end FPS of the serial pipeline against the streamed one (edge_pose.stream) against pure inference, side
by side, interleaved chunk by chunk, per inference thread count; and, with a detector, streamed multi-person FPS
at detection intervals 1, 3, 5 against pose alone on the same boxes.

Contenders, each run for --frames frames per round, all of them in every round (A B C D A B C D ...):
  inference  session.infer on one real crop's tensor, nothing else (the ceiling for one person per frame)
  read       the video decoded alone (VideoFrames into one reused buffer)
  serial     read -> boxes -> crop -> infer -> decode one after another (PoseEstimator.predict / predict_next)
  stream     PoseStream: read and crop in threads ahead of inference and decode (its start and fill included)

One person per frame comes from the whole-frame box. The multi-person part runs on coco-mini's street scene panned
into a video; "pose only" streams the boxes the detector finds on every frame, computed before timing, so its FPS
is the pose side alone for the same people.

    python benchmarks/pipeline.py [--pose BUNDLE] [--detector BUNDLE] [--frames 100] [--rounds 5] [--threads 2,1]

Without bundles it converts the shared SimpleBaseline-family ONNX (TFLite int8) and the shared SSD (TFLite fp32)
once into benchmarks/out/pipeline/. Ratios are medians over rounds; absolute FPS moves with the machine's load.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shared_material import MINI, ROOT, SB, SHARED  # noqa: E402 - beside this script
from shared_material import convert_once as _convert  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "pipeline"


def make_video(path: Path, image: Path, frames: int, size=(480, 640), fourcc: str = "MJPG") -> Path:
    """One photo panned 3 px right and 1 px down a frame (the people move in the picture, as a camera sees them)."""
    import cv2

    h, w = size
    big = cv2.resize(cv2.imread(str(image)), (w + 3 * frames, h + frames))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 15, (w, h))
    for i in range(frames):
        out.write(np.ascontiguousarray(big[i:i + h, 3 * i:3 * i + w]))
    out.release()
    return path


def _chunk_inference(est, x, n: int):
    t0, c0 = time.perf_counter(), time.thread_time()
    marks = [t0]
    for _ in range(n):
        est.session.infer(x)
        marks.append(time.perf_counter())
    return n / (marks[-1] - t0), list(np.diff(marks)), {"main": (time.thread_time() - c0) / n}


def _chunk_read(video: Path, n: int) -> tuple[float, list[float]]:
    from edge_pose.frames import VideoFrames

    frames = VideoFrames(video, loop=True)
    buf = frames.read()
    t0, c0 = time.perf_counter(), time.thread_time()
    marks = [t0]
    for _ in range(n):
        buf = frames.read(buf)
        marks.append(time.perf_counter())
    frames.close()
    return n / (marks[-1] - t0), list(np.diff(marks)), {"main": (time.thread_time() - c0) / n}


def _with_people(result):
    return result[0], 1.0, result[1], result[2]


def _chunk_serial(est, video: Path, n: int, every: int | None, boxes=None) -> tuple[float, float]:
    from edge_pose.frames import VideoFrames

    frames = VideoFrames(video, loop=True)
    buf, people = None, 0
    t0, c0 = time.perf_counter(), time.thread_time()
    marks = [t0]
    for i in range(n):
        buf = frames.read(buf)
        if every:
            found = est.predict_next(buf, every)
        else:
            found = est.predict(buf, boxes(buf, i) if boxes else None)
        people += len(found)
        marks.append(time.perf_counter())
    frames.close()
    if every:
        est._stream = None  # predict_next's carried boxes: the next chunk starts from the video's start again
    return n / (marks[-1] - t0), people / n, list(np.diff(marks)), {"main": (time.thread_time() - c0) / n}


def _chunk_stream(est, video: Path, n: int, every: int = 1, boxes=None) -> tuple[float, float]:
    from edge_pose.frames import VideoFrames
    from edge_pose.stream import PoseStream

    people = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    marks = [t0]
    with PoseStream(est, VideoFrames(video, loop=True), boxes=boxes, detect_every=every) as stream:
        for item in stream:
            people += len(item.people)
            marks.append(time.perf_counter())
            if item.index == n - 1:
                cpu = {"main": (time.thread_time() - c0) / n, **{k: v / max(1, stream.handled[k]) for k, v in stream.cpu_s.items()}}
                break  # the close (joining the threads) is not a frame's cost
    return n / (marks[-1] - t0), people / n, list(np.diff(marks)), cpu


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths))))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pose", help="pose bundle (default: converted SimpleBaseline-family TFLite int8)")
    ap.add_argument("--detector", help="detector bundle (default: converted SSD TFLite fp32); 'none' skips the "
                                       "multi-person part")
    ap.add_argument("--video", help="a video for the one-person part (default: coco-mini 000000000785 panned)")
    ap.add_argument("--fourcc", default="MJPG", help="codec of the made video (MJPG, mp4v, or I420 for raw "
                    "frames: what a CSI or YUYV camera delivers, no decoding)")
    ap.add_argument("--frames", type=int, default=100, help="frames per contender per round (default 100)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds, after one warm-up (default 5)")
    ap.add_argument("--threads", default="2,1", help="inference thread counts (default 2,1)")
    ap.add_argument("--detector-threads", type=int, help="the detector's thread count (default: the pose model's)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from edge_pose import PoseEstimator
    from edge_pose.bench.environment import collect
    from edge_pose.preprocess import crop_people, to_model_input
    from edge_pose.frames import VideoFrames

    threads = [int(t) for t in args.threads.split(",")]
    pose = args.pose or _convert([str(SHARED / "models/simplebaseline-mbv2-ultralight/model.onnx"), *SB, "--format",
                                  "tflite", "--precision", "int8", "--calib", str(MINI / "test_coco.json"), "--boxes",
                                  str(MINI / "test_coco_det_AP_H_56.json")], OUT / "pose")
    det = None
    if args.detector != "none":
        det = args.detector or _convert([str(SHARED / "models/ssdlite-mobilenetv2-person/frozen_inference_graph.pb"),
                                         "--task", "detect", "--format", "tflite", "--precision", "fp32", "--calib",
                                         str(MINI / "test_coco.json")], OUT / "detector")
    work = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    ext = ".avi" if args.fourcc in ("MJPG", "I420", "IYUV") else ".mp4"  # I420: raw frames, as a camera gives
    video = Path(args.video) if args.video else make_video(work / f"one{ext}", MINI / "000000000785.jpg", 150,
                                                           fourcc=args.fourcc)
    ests = {t: PoseEstimator(pose, threads=t, detector=None, allow_degraded=True) for t in threads}
    first = VideoFrames(video).read()
    spec = ests[threads[0]].manifest.input
    x = to_model_input(crop_people(first, [[0, 0, first.shape[1], first.shape[0]]], spec.size).images, spec)

    n = args.frames
    one = {}
    for t, est in ests.items():
        one[(t, "inference")] = lambda est=est: _with_people(_chunk_inference(est, x, n))
        one[(t, "read")] = lambda: _with_people(_chunk_read(video, n))
        one[(t, "serial")] = lambda est=est: _chunk_serial(est, video, n, None)
        one[(t, "stream")] = lambda est=est: _chunk_stream(est, video, n)
    multi = {}
    if det:
        street = make_video(work / f"street{ext}", MINI / "000000040083.jpg", 150, fourcc=args.fourcc)
        from edge_pose.detect.bundle import open_detector

        for t in threads:
            detector = open_detector(det, threads=args.detector_threads or t, allow_degraded=True)
            est = PoseEstimator(pose, threads=t, detector=detector, allow_degraded=True)
            if t == threads[0]:
                cap, boxes_by_frame = VideoFrames(street), []
                while (frame := cap.read()) is not None:
                    boxes_by_frame.append(est.detector.detect(frame))
                known = lambda image, i: boxes_by_frame[i % len(boxes_by_frame)]  # noqa: E731
            mn = max(1, n // 4)  # several people a frame: fewer frames keep a round short
            multi[(t, "pose only (boxes known), stream")] = lambda est=est: _chunk_stream(est, street, mn, boxes=known)
            multi[(t, "pose only (boxes known), serial")] = lambda est=est: _chunk_serial(est, street, mn, None,
                                                                                          boxes=known)
            for every in (1, 3, 5):
                multi[(t, f"detect every {every}, stream")] = lambda e=every, est=est: _chunk_stream(est, street,
                                                                                                     mn, e)
                multi[(t, f"detect every {every}, serial")] = lambda e=every, est=est: _chunk_serial(est, street,
                                                                                                     mn, e)
    fps = {k: [] for k in [*one, *multi]}
    p50_fps = {k: [] for k in [*one, *multi]}  # 1 / the round's median frame time: blind to preemption spikes
    people, cpu = {}, {}
    contenders = {**one, **multi}
    print(f"{len(contenders)} contenders x {args.rounds} rounds x {n} frames, interleaved ...", file=sys.stderr)
    for r in range(args.rounds + 1):
        for key, run in contenders.items():
            f, p, times, c = run()
            if r:
                cpu.setdefault(key, []).append(c)
                fps[key].append(f)
                p50_fps[key].append(1.0 / float(np.median(times)))
                people[key] = p
        print(f"  round {r}/{args.rounds}" + (" (warm-up)" if not r else ""), file=sys.stderr, flush=True)
    med = {k: float(np.median(v)) for k, v in fps.items()}

    def ratio(a, b, of=fps) -> float:  # per round, then the median: a round's load hits both alike
        return float(np.median(np.asarray(of[a]) / np.asarray(of[b])))

    env = collect()
    print(f"\none person per frame (whole-frame box), {video.name} {first.shape[0]}x{first.shape[1]}; "
          f"pose {Path(pose).name}; {env.get('cpu_model')} x{env.get('cpu_count')}; median FPS of {args.rounds} "
          f"rounds of {n} frames")
    rows = []
    best_inference = max(threads, key=lambda t: med[(t, "inference")])
    for t in threads:
        inf, read = med[(t, "inference")], med[(t, "read")]
        bound = (t, "read") if read < inf else (t, "inference")
        rows.append([f"{t}", f"{inf:.1f}", f"{read:.1f}", f"{med[(t, 'serial')]:.1f}", f"{med[(t, 'stream')]:.1f}",
                     f"{ratio((t, 'serial'), (t, 'inference')):.2f}x", f"{ratio((t, 'stream'), (t, 'inference')):.2f}x",
                     f"{ratio((t, 'stream'), (best_inference, 'inference')):.2f}x",
                     f"{ratio((t, 'stream'), (t, 'serial')):.2f}x", bound[1], f"{ratio((t, 'stream'), bound):.2f}x"])
    _table(["threads", "inference", "read", "serial", "stream", "serial/inf", "stream/inf",
            f"stream/inf@{best_inference}t", "stream/serial", "bound", "stream/bound"], rows)
    print("\nthe same from each round's median frame time (1 / p50: what the pipeline does between the machine's "
          "preemption spikes)")
    rows = []
    for t in threads:
        pm = {k: float(np.median(v)) for k, v in p50_fps.items() if k[0] == t}
        bound = (t, "read") if pm[(t, "read")] < pm[(t, "inference")] else (t, "inference")
        rows.append([f"{t}", f"{pm[(t, 'inference')]:.1f}", f"{pm[(t, 'read')]:.1f}", f"{pm[(t, 'serial')]:.1f}",
                     f"{pm[(t, 'stream')]:.1f}", f"{ratio((t, 'serial'), (t, 'inference'), p50_fps):.2f}x",
                     f"{ratio((t, 'stream'), (t, 'inference'), p50_fps):.2f}x",
                     f"{ratio((t, 'stream'), (t, 'serial'), p50_fps):.2f}x", bound[1],
                     f"{ratio((t, 'stream'), bound, p50_fps):.2f}x"])
    _table(["threads", "inference", "read", "serial", "stream", "serial/inf", "stream/inf", "stream/serial",
            "bound", "stream/bound"], rows)
    print("\nCPU ms per frame by thread (time.thread_time; with 1 inference thread the runtime runs in the main "
          "thread, so these are all the work). On an idle machine with a core per thread the stream's frame time "
          "is the largest of them:")
    rows = []
    for t in threads:
        for what in ("inference", "read", "serial", "stream"):
            c = {k: float(np.median([d[k] for d in cpu[(t, what)]])) * 1e3 for k in cpu[(t, what)][0]}
            rows.append([f"{t}", what, f"{c['main']:.2f}", f"{c.get('read', 0):.2f}", f"{c.get('prepare', 0):.2f}",
                         f"{1e3 / max(c.values()):.0f}" if what == "stream" and t == 1 else ""])
    _table(["threads", "contender", "main", "reader", "prepare", "FPS if each had a core"], rows)
    if multi:
        det_threads = f"{args.detector_threads} threads" if args.detector_threads else "the pose model's threads"
        print(f"\nseveral people per frame ({street.name}, SSD detector {Path(det).name} at {det_threads}), "
              f"{max(1, n // 4)} frames a round")
        cells = []
        for t in threads:
            base = (t, "pose only (boxes known), stream")
            cells += [[f"{t}", k[1], f"{med[k]:.1f}", f"{people[k]:.2f}", f"{ratio(k, base):.2f}x"]
                      for k in multi if k[0] == t]
        _table(["threads", "pipeline", "FPS", "people/frame", "x pose only (stream)"], cells)
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "frames": n, "rounds": args.rounds,
                                               "fps": {" ".join(map(str, k)) if isinstance(k, tuple) else k: v
                                                       for k, v in fps.items()},
                                               "people_per_frame": {str(k): v for k, v in people.items()}},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

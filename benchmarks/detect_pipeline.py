"""Detector + pose end to end on a video made of real frames: per-stage p50 (read, detect, carry, crop, pose, decode)
and FPS, for the SSD detector bundle at detection intervals 1, 3 and 5 against OpenCV's HOG and the whole frame,
all in one run, interleaved frame by frame.

The video: each coco-mini image held for --hold frames while the view pans a few pixels per frame (people move in the
picture, as a camera sees them). Between detections boxes are carried from the last frame's keypoints
(edge_pose.detect.carry); `vs every frame` is how far those keypoints are from detecting on every frame (mean px over
people matched by box IoU >= 0.5) and how many people each finds.

    python benchmarks/detect_pipeline.py [--pose BUNDLE_OR_DIR --detector BUNDLE_OR_DIR] [--frames 120]

Without bundles it converts the shared SimpleBaseline-family ONNX (TFLite int8) and the shared SSD (TFLite fp32)
once into benchmarks/out/detect_pipeline/.
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

OUT = ROOT / "benchmarks" / "out" / "detect_pipeline"


def make_video(path: Path, hold: int, size=(480, 640)) -> Path:
    import cv2

    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (w, h))
    for image_path in sorted(MINI.glob("*.jpg")):
        img = cv2.imread(str(image_path))
        big = cv2.resize(img, (w + 4 * hold, h + 2 * hold))
        for i in range(hold):  # pan right and down, 4 and 2 px a frame
            writer.write(np.ascontiguousarray(big[2 * i:2 * i + h, 4 * i:4 * i + w]))
    writer.release()
    return path


def _frames(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    while True:
        t0 = time.perf_counter()
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        yield frame, time.perf_counter() - t0


def _match_error(a, b) -> list[float]:
    """Mean keypoint distance of people in `a` matched (box IoU >= 0.5) to people in `b`."""
    out = []
    for p in a:
        best, err = 0.0, None
        for q in b:
            x0, y0 = max(p.box[0], q.box[0]), max(p.box[1], q.box[1])
            x1 = min(p.box[0] + p.box[2], q.box[0] + q.box[2])
            y1 = min(p.box[1] + p.box[3], q.box[1] + q.box[3])
            inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
            iou = inter / (p.box[2] * p.box[3] + q.box[2] * q.box[3] - inter + 1e-9)
            if iou > best:
                best, err = iou, float(np.linalg.norm(p.keypoints - q.keypoints, axis=1).mean())
        if best >= 0.5:
            out.append(err)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pose", help="pose bundle or directory (default: converted SimpleBaseline-family TFLite int8)")
    ap.add_argument("--detector", help="detector bundle or directory (default: converted SSD TFLite fp32)")
    ap.add_argument("--frames", type=int, default=120, help="timed frames per variant (default 120)")
    ap.add_argument("--hold", type=int, default=15, help="frames per coco-mini image in the video (default 15)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from edge_pose import PoseEstimator
    from edge_pose.boxes import box_source
    from edge_pose.detect.bundle import open_detector

    pose = args.pose or _convert([str(SHARED / "models/simplebaseline-mbv2-ultralight/model.onnx"), *SB, "--format",
                                  "tflite", "--precision", "int8", "--calib", str(MINI / "test_coco.json"), "--boxes",
                                  str(MINI / "test_coco_det_AP_H_56.json")], OUT / "pose")
    det = args.detector or _convert([str(SHARED / "models/ssdlite-mobilenetv2-person/frozen_inference_graph.pb"),
                                     "--task", "detect", "--format", "tflite", "--precision", "fp32", "--calib",
                                     str(MINI / "test_coco.json")], OUT / "detector")
    video = make_video(Path(tempfile.mkdtemp()) / "coco-mini-pan.mp4", args.hold)
    detector = open_detector(det, threads=args.threads, allow_degraded=True)
    variants = {f"detector every {n}": n for n in (1, 3, 5)}
    ests = {name: PoseEstimator(pose, threads=args.threads, detector=detector, allow_degraded=True)
            for name in variants}
    ests["HOG boxes"] = PoseEstimator(pose, threads=args.threads, detector=None, allow_degraded=True)
    ests["whole frame"] = ests["HOG boxes"]
    hog, frame_box = box_source("hog"), box_source("frame")
    stages = ("read", "detect", "carry", "crop", "infer", "decode", "total")
    times = {name: {k: [] for k in stages} for name in ests}
    people = {name: [] for name in ests}
    errors = {name: [] for name in variants}
    frames = _frames(video)
    print(f"timing {len(ests)} variants interleaved on {args.frames} frames of {video.name} ...", file=sys.stderr)
    for i in range(args.frames + 1):
        frame, read_s = next(frames)
        results = {}
        for name, est in ests.items():
            t0 = time.perf_counter()
            if name in variants:
                found = est.predict_next(frame, variants[name])
            else:
                source = hog if name == "HOG boxes" else frame_box
                t_box = time.perf_counter()
                boxes = source.boxes(frame, "frame")
                box_s = time.perf_counter() - t_box
                found = est.predict(frame, boxes if len(boxes) else None)
                est.last_timings["detect"] = box_s
            total = time.perf_counter() - t0 + read_s
            results[name] = found
            if i == 0:
                continue  # warm-up
            t = est.last_timings
            for k in ("detect", "carry", "crop", "infer", "decode"):
                times[name][k].append(float(t.get(k, 0.0)))
            times[name]["read"].append(read_s)
            times[name]["total"].append(total)
            people[name].append(len(found))
        if i:
            for name in variants:
                errors[name] += _match_error(results[name], results["detector every 1"])
        if i and i % max(1, args.frames // 4) == 0:
            print(f"  {i}/{args.frames} frames", file=sys.stderr, flush=True)
    rows = []
    for name in ests:
        p50 = {k: float(np.median(v) * 1e3) for k, v in times[name].items()}
        fps = 1.0 / float(np.mean(times[name]["total"]))
        err = errors.get(name)
        rows.append({"variant": name, "fps": fps, "people_per_frame": float(np.mean(people[name])),
                     "kp_px_vs_every_frame": float(np.mean(err)) if err else None, **{f"{k}_ms": v for k, v in
                                                                                      p50.items()}})
    base = rows[0]["fps"]
    head = f"{'variant':<20} {'FPS':>6} {'x every':>7} {'people':>6} {'px vs 1':>7} " + " ".join(
        f"{k:>7}" for k in stages)
    print(head)
    for r in rows:
        px = f"{r['kp_px_vs_every_frame']:.2f}" if r["kp_px_vs_every_frame"] is not None else "-"
        print(f"{r['variant']:<20} {r['fps']:>6.1f} {r['fps'] / base:>6.2f}x {r['people_per_frame']:>6.2f} {px:>7} "
              + " ".join(f"{r[k + '_ms']:>7.2f}" for k in stages))
    print(f"p50 ms per stage; {args.threads} threads; pose {pose}; detector {det}; "
          f"{detector.loaded.chosen.label()}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

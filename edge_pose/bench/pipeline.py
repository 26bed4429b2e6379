"""Whole-pipeline timing on a real image or video: read, person boxes, crop and normalise, inference, decode."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_pose.errors import EdgePoseError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def _frames(path: Path):
    """Endless frames: an image re-read from disk each time, a video rewound at its end; yields (frame, read s)."""
    import cv2

    if path.suffix.lower() in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise EdgePoseError(f"{path}: cannot open video")
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = cap.read()
                if not ok:
                    raise EdgePoseError(f"{path}: no readable frame")
            yield frame, time.perf_counter() - t0
    while True:
        t0 = time.perf_counter()
        frame = cv2.imread(str(path))
        if frame is None:
            raise EdgePoseError(f"{path}: not a readable image or video")
        yield frame, time.perf_counter() - t0


def time_pipeline(variant, input_path: str, runs: int, boxes: str = "frame", detector=None, detect_every: int = 1,
                  progress=None) -> dict:
    """Per-stage p50 (ms) and end-to-end FPS for one loaded variant, over `runs` frames after one warm-up frame.

    boxes: "frame", "hog" or a COCO file (edge_pose.boxes), or "detector" with `detector` (a Detector) run every
    `detect_every` frames, boxes carried from the last keypoints in between."""
    from edge_pose.boxes import box_source
    from edge_pose.estimator import PoseEstimator

    path = Path(input_path)
    if not path.exists():
        raise EdgePoseError(f"{path}: no such image or video")
    chosen = variant.loaded.chosen
    est = PoseEstimator(variant.bundle, threads=variant.threads, backend=chosen.backend,
                        accelerator=chosen.accelerator, allow_degraded=True, detector=detector)
    if boxes == "detector" and detector is None:
        raise EdgePoseError("bench --pipeline --boxes detector needs --detector BUNDLE_OR_DIR")
    source = None if boxes == "detector" else box_source(boxes)
    stages = {k: [] for k in ("read", "boxes", "crop", "infer", "decode", "total")}
    frames = _frames(path)
    people = 0
    for i in range(runs + 1):
        t0 = time.perf_counter()
        frame, read_s = next(frames)
        t1 = time.perf_counter()
        if source is None:
            result = est.predict_next(frame, detect_every)
            t2 = t1 + est.last_timings["detect"] + est.last_timings.get("carry", 0.0)
        else:
            found = source.boxes(frame, path.name)
            t2 = time.perf_counter()
            result = est.predict(frame, found if len(found) else None)
        total = time.perf_counter() - t0
        if progress:
            progress(i, runs)
        if i == 0:
            continue  # warm-up frame
        people += len(result)
        stages["read"].append(read_s)
        stages["boxes"].append(t2 - t1)
        for k in ("crop", "infer", "decode"):
            stages[k].append(est.last_timings.get(k, 0.0))
        stages["total"].append(total)
    p50 = {k: float(np.median(v) * 1e3) for k, v in stages.items()}
    return {"label": variant.label, "input": str(path), "frames": runs, "boxes": boxes, "detect_every": detect_every,
            "people_per_frame": people / runs, "stage_p50_ms": p50,
            "fps": 1.0 / float(np.mean(stages["total"]))}

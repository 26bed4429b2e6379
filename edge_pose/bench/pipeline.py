"""Whole-pipeline timing on a real image or video: read, person boxes (detect or carry), crop and normalise,
inference, decode, streamed (edge_pose.stream: the stages overlap in three threads) or serial (one after another).

Every stage is counted: in the serial loop the per-frame total is read + boxes + detect + carry + crop + infer +
decode + other (Python between them); in the stream the caller's thread spends each frame's interval in wait (for a
prepared frame) + carry + infer + decode (+ the crop of frames whose boxes were carried) + other, while read,
detect, boxes and crop of the other frames run in the reader and prepare threads.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_pose.errors import EdgePoseError

MODES = ("stream", "serial")
STAGES = ("read", "boxes", "detect", "carry", "crop", "infer", "decode", "wait", "other", "total")


def _box_function(boxes: str, name: str):
    """--boxes frame|hog|FILE as the stream's box function (image, index) -> boxes; None for the whole frame.

    An image where the source finds nobody is taken whole, as bench always did (a pipeline still runs a pose)."""
    from edge_pose.boxes import box_source

    if boxes == "frame":
        return None
    source = box_source(boxes)

    def found(image, index):
        rows = source.boxes(image, name)
        return rows if len(rows) else None
    return found


def _serial(est, frames, box_fn, detect_every: int, runs: int, progress):
    """The stages one after another per frame, in this thread; yields (people, timings) per frame."""
    buf = None
    for i in range(runs + 1):
        t0 = time.perf_counter()
        frame = frames.read(buf)
        if frame is None:
            raise EdgePoseError(f"{frames.path}: no readable frame")
        buf = frame
        t1 = time.perf_counter()
        if box_fn is None and est.detector is not None:
            people = est.predict_next(frame, detect_every)
            t2 = t1
        else:
            found = box_fn(frame, i) if box_fn is not None else None
            t2 = time.perf_counter()
            people = est.predict(frame, found)
        total = time.perf_counter() - t0
        timings = {"read": t1 - t0, "boxes": t2 - t1, **est.last_timings, "wait": 0.0, "interval": total}
        if progress:
            progress(i, runs)
        yield people, timings


def _streamed(est, frames, box_fn, detect_every: int, runs: int, progress):
    from edge_pose.stream import PoseStream

    with PoseStream(est, frames, boxes=box_fn, detect_every=detect_every) as stream:
        for i, item in enumerate(stream):
            if progress:
                progress(i, runs)
            yield item.people, item.timings
            if i == runs:
                break


BLOCK = 10  # frames per pipeline block; each is followed by as many pure inferences on the same session


def _pure_block(est, x: np.ndarray, n: int) -> float:
    """Seconds for n runtime calls on one model-ready input: the rate inference alone allows, timed now."""
    t0 = time.perf_counter()
    for _ in range(n):
        est.session.infer(x)
    return time.perf_counter() - t0


def time_pipeline(variant, input_path: str, runs: int, boxes: str = "frame", detector=None, detect_every: int = 1,
                  progress=None, mode: str = "stream") -> dict:
    """Per-stage p50 (ms) and end-to-end FPS for one loaded variant, over `runs` frames after one warm-up frame,
    beside the pure inference FPS of the same session timed in blocks that alternate with the pipeline's.

    Blocks of BLOCK frames alternate with BLOCK bare runtime calls on one fixed input, so that drift (another
    process, the clock) hits both sides alike; during a bare block the stream's threads have filled their bounded
    queues and wait, so inference alone runs without them. boxes: "frame", "hog" or a COCO file (edge_pose.boxes),
    or "detector" with `detector` (a Detector) run every `detect_every` frames, boxes carried from the last
    keypoints in between. mode: "stream" or "serial"."""
    from edge_pose.bench.runner import sample_input
    from edge_pose.estimator import PoseEstimator
    from edge_pose.frames import open_frames

    if mode not in MODES:
        raise EdgePoseError(f"pipeline mode {mode!r}: one of {', '.join(MODES)}")
    path = Path(input_path)
    if not path.exists():
        raise EdgePoseError(f"{path}: no such image or video")
    if boxes == "detector" and detector is None:
        raise EdgePoseError("bench --pipeline --boxes detector needs --detector BUNDLE_OR_DIR")
    chosen = variant.loaded.chosen
    est = PoseEstimator(variant.bundle, threads=variant.threads, backend=chosen.backend,
                        accelerator=chosen.accelerator, allow_degraded=True,
                        detector=detector if boxes == "detector" else None)
    box_fn = None if boxes == "detector" else _box_function(boxes, path.name)
    x = sample_input(variant.bundle)
    est.session.infer(x)
    frames = open_frames(path, loop=True)
    run = _streamed if mode == "stream" else _serial
    stages = {k: [] for k in STAGES}
    people = detections = 0
    pure_s, pure_n, block_ratios, block_s, block_people = 0.0, 0, [], 0.0, 0
    flip = 2 if est.flip else 1
    try:
        for i, (found, t) in enumerate(run(est, frames, box_fn, detect_every, runs, progress)):
            if i == 0:
                continue  # warm-up frame (and, streamed, the stages filling up)
            people += len(found)
            detections += bool(t.get("detect"))
            counted = sum(t.get(k, 0.0) for k in ("wait", "carry", "infer", "decode"))
            if mode == "serial":
                counted += sum(t.get(k, 0.0) for k in ("read", "boxes", "detect", "crop"))
            else:
                counted += t.get("caller_crop", 0.0) + t.get("caller_detect", 0.0)
            for k in STAGES[:-2]:
                stages[k].append(t.get(k, 0.0))
            stages["other"].append(max(0.0, t["interval"] - counted))
            stages["total"].append(t["interval"])
            block_s += t["interval"]
            block_people += len(found)
            if i % BLOCK == 0 or i == runs:
                n = i - (i - 1) // BLOCK * BLOCK
                bare = _pure_block(est, x, n)
                pure_s, pure_n = pure_s + bare, pure_n + n
                # this block's e2e rate over the rate its inferences alone allow (one per person, two with flip)
                block_ratios.append((bare / n) * max(block_people / n * flip, 1.0) / (block_s / n))
                block_s, block_people = 0.0, 0  # (a stream's interval leaves out the time spent here)
    finally:
        if mode == "serial":
            frames.close()
    fps = 1.0 / float(np.mean(stages["total"]))
    per_frame = people / runs
    inference_fps = pure_n / pure_s if pure_s > 0 else None
    # the frame rate inference alone would allow: one inference per person (two with the flip test)
    bound = inference_fps / max(per_frame * flip, 1.0) if inference_fps else None
    read_fps = 1.0 / float(np.mean(stages["read"])) if np.mean(stages["read"]) > 0 else None
    return {"label": variant.label, "input": str(path), "mode": mode, "frames": runs, "boxes": boxes,
            "detect_every": detect_every, "detections": detections, "people_per_frame": per_frame,
            "stage_p50_ms": {k: float(np.median(v) * 1e3) for k, v in stages.items()},
            # a stage that runs on some frames only (detect every N, carry) has a p50 of 0: its mean says its cost
            "stage_mean_ms": {k: float(np.mean(v) * 1e3) for k, v in stages.items()},
            "fps": fps, "inference_fps": inference_fps, "inference_bound_fps": bound,
            "inference_timing": f"{pure_n} bare runtime calls in blocks of {BLOCK} alternating with the pipeline's "
                                "frames, same session and threads",
            "ratio_to_inference": fps / bound if bound else None,
            "block_ratios": [float(r) for r in block_ratios],
            "read_fps": read_fps,
            # of the main thread's time, the share inside the runtime: near 1 streamed, the runtime never waits
            "infer_share": float(np.sum(stages["infer"]) / np.sum(stages["total"])),
            "bound_by": "read" if read_fps and bound and read_fps < bound else "inference"}

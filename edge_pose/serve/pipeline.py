"""The processing loop: newest frame -> person boxes -> pose estimator (batched crops, decode) -> tracking -> hub.

The estimator is shared with POST /v1/infer, so calls go through one lock (runtimes' sessions are not re-entrant).
A failure on one frame is logged and counted; the loop goes on (one bad frame must not stop a camera daemon).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Protocol

import numpy as np

log = logging.getLogger("edge_pose.serve.pipeline")


class Estimator(Protocol):
    """What the daemon needs from edge_pose.PoseEstimator."""

    last_timings: dict

    def predict(self, image_bgr: np.ndarray, boxes=None) -> list: ...


def person_json(person: Any, track_id: int | None = None) -> dict:
    """A Person (keypoints [K,2] image px, scores [K], box xywh) as plain JSON: keypoints are [x, y, score]."""
    kp = np.asarray(person["keypoints"] if isinstance(person, dict) else person.keypoints, dtype=np.float64)
    sc = np.asarray(person["scores"] if isinstance(person, dict) else person.scores, dtype=np.float64)
    box = person["box"] if isinstance(person, dict) else person.box
    score = person.get("score") if isinstance(person, dict) else getattr(person, "score", None)
    bad = ~np.isfinite(kp).all(axis=-1) | ~np.isfinite(sc)  # NaN is not JSON: a keypoint without a place,
    if bad.any():  # as the decoder's contract says (finite values, score <= 0)
        kp, sc = np.where(bad[:, None], 0.0, kp), np.where(bad, 0.0, sc)
    if score is None or not np.isfinite(score):
        score = float(sc.mean()) if sc.size else 0.0
    box = np.nan_to_num(np.asarray(box, dtype=np.float64).reshape(-1)[:4], nan=0.0, posinf=0.0, neginf=0.0)
    out = {
        "box": [round(float(v), 1) for v in box],
        "score": round(float(score), 4),
        "keypoints": [[round(float(x), 1), round(float(y), 1), round(float(s), 4)]
                      for (x, y), s in zip(kp, sc)],
    }
    if track_id is not None:
        out["id"] = int(track_id)
    return out


NOT_TIMES = ("people",)  # counts the estimator reports beside its stage times


def timings_ms(timings: dict | None) -> dict:
    """Estimator stage timings (seconds) -> {stage: ms}."""
    return {str(k): round(float(v) * 1000.0, 3) for k, v in (timings or {}).items()
            if isinstance(v, (int, float)) and k not in NOT_TIMES and np.isfinite(v)}


class LockedEstimator:
    """One estimator, one caller at a time; predict returns (people, timings in seconds)."""

    def __init__(self, estimator: Estimator):
        self.estimator = estimator
        self._lock = threading.Lock()

    def predict(self, image: np.ndarray, boxes=None) -> tuple[list, dict]:
        with self._lock:
            people = self.estimator.predict(image, boxes=boxes)
            timings = dict(getattr(self.estimator, "last_timings", None) or {})
        return people, timings


def box_finder(spec: str, max_people: int) -> Callable[[np.ndarray, str | None], np.ndarray]:
    """(image, image name) -> person boxes [N, 5] (x, y, w, h, score), best first, at most max_people.

    spec: "whole" (the frame is one box), "hog" (OpenCV's people detector) or a COCO detections file (image
    directories of COCO-named files); edge_pose.boxes does the work and raises its one-line errors.
    """
    from edge_pose.boxes import box_source

    source = box_source(spec)

    def find(image: np.ndarray, name: str | None = None) -> np.ndarray:
        return source.boxes(image, name)[:max_people]

    return find


class DetectorBoxes:
    """The stream's boxes from a detector bundle: detection every N frames, boxes carried from the people's keypoints
    in between (edge_pose.detect.carry). Called like box_finder's function; `one` detects afresh for an upload."""

    def __init__(self, detector, every: int, max_people: int):
        from edge_pose.detect.carry import EveryN

        self.detector, self.max_people = detector, max_people
        self._stream = EveryN(detector, every)
        self._lock = threading.Lock()  # the pipeline thread and HTTP uploads share the detector's session

    def __call__(self, image: np.ndarray, name: str | None = None) -> np.ndarray:
        with self._lock:
            return self._stream.boxes(image, name)[:self.max_people]

    def update(self, people, shape) -> None:
        self._stream.update(people, shape)

    def one(self, image: np.ndarray, name: str | None = None) -> np.ndarray:
        with self._lock:
            return self.detector.detect(image)[:self.max_people]


class FrameLoop(threading.Thread):
    """The daemon's loop: newest frame -> person boxes -> pose -> tracking -> the hub (sinks, HTTP)."""

    def __init__(self, capture, estimator: LockedEstimator, hub, metrics, find_boxes, tracker=None,
                 source_uri: str = ""):
        super().__init__(name="pipeline", daemon=True)
        self.capture, self.estimator, self.hub, self.m = capture, estimator, hub, metrics
        self.find_boxes, self.tracker, self.source_uri = find_boxes, tracker, source_uri
        self._halt = threading.Event()
        self.processed = 0
        self.errors = 0
        self.last_error = ""
        self.last_error_time = 0.0
        self.last_result_time = 0.0
        self.fps = 0.0

    def stop(self) -> None:
        self._halt.set()

    def status(self) -> dict:
        return {"alive": self.is_alive(), "processed": self.processed, "errors": self.errors,
                "last_error": self.last_error, "fps": round(self.fps, 2),
                "last_result_age_s": round(time.time() - self.last_result_time, 3) if self.last_result_time else None}

    def process(self, frame) -> dict:
        t0 = time.perf_counter()
        boxes = self.find_boxes(frame.image, frame.name)
        t1 = time.perf_counter()
        people, stage = self.estimator.predict(frame.image, boxes)
        if hasattr(self.find_boxes, "update"):  # carried boxes follow the people just found
            self.find_boxes.update(people, frame.image.shape)
        t2 = time.perf_counter()
        tracker = self.tracker  # SIGHUP may swap it between frames
        if tracker is not None:
            plain = [{"keypoints": np.asarray(p.keypoints), "scores": np.asarray(p.scores), "box": p.box,
                      "score": getattr(p, "score", None)} for p in people]
            tracked = tracker.update(plain, frame.mono_time)
            out = [person_json(p, p["id"]) for p in tracked]
        else:
            out = [person_json(p) for p in people]
        t3 = time.perf_counter()
        stage = dict(stage)
        stage.update({"boxes": t1 - t0, "pose": t2 - t1, "tracking": t3 - t2, "total": t3 - t0})
        stage["latency"] = time.monotonic() - frame.mono_time  # capture -> result, including waiting
        for name, seconds in stage.items():
            if isinstance(seconds, (int, float)) and name not in NOT_TIMES:
                self.m.stage_seconds.observe(float(seconds), stage=name)
        h, w = frame.image.shape[:2]
        return {"frame": frame.index, "time": round(frame.wall_time, 3), "source": self.source_uri,
                "image": {"height": h, "width": w}, "people": out, "timings_ms": timings_ms(stage)}

    def run(self) -> None:
        while not self._halt.is_set():
            frame = self.capture.latest(timeout=0.5)
            if frame is None:
                continue
            try:
                result = self.process(frame)
            except Exception as exc:  # keep the daemon alive; the error is counted, logged and in /healthz
                self.errors += 1
                self.last_error_time = time.time()
                self.last_error = f"frame {frame.index}: {type(exc).__name__}: {exc}"
                self.m.pipeline_errors.inc()
                if self.errors == 1 or self.errors % 100 == 0:
                    log.exception("pipeline: %s (%d errors so far)", self.last_error, self.errors)
                continue
            self.hub.publish(result, frame.image)
            now = time.time()
            if self.last_result_time:
                dt = max(now - self.last_result_time, 1e-6)
                self.fps = 1.0 / dt if self.fps == 0 else 0.9 * self.fps + 0.1 / dt
            self.last_result_time = now
            self.processed += 1
            self.m.frames_processed.inc()
            self.m.people.inc(len(result["people"]))

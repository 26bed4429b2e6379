"""PoseEstimator: image + person boxes -> people with keypoints in image pixels, on the best backend here.

The whole top-down pipeline in one place: boxes -> affine crops -> model input (from the manifest) -> heatmaps
(session chosen by edge_pose.select) -> optional flip-test fusion -> vectorised decode -> back-projection.
Per-stage wall times of the last call are kept in `last_timings` for bench and serve.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_pose.decode import decode_heatmaps, fuse_flip
from edge_pose.errors import EdgePoseError
from edge_pose.preprocess import crop_people, crop_to_image, to_model_input
from registry import DECODERS

RESCORE_THRESHOLD = 0.2  # keypoints above this score count towards a person's score (mmpose's COCO rescoring)


@dataclass
class Person:
    keypoints: np.ndarray  # float32 [K, 2] (x, y) image px
    scores: np.ndarray  # float32 [K] heatmap maxima
    box: np.ndarray  # float32 [4] x, y, w, h
    box_score: float = 1.0
    score: float = field(init=False)  # box score x mean confident keypoint score

    def __post_init__(self):
        good = self.scores[self.scores > RESCORE_THRESHOLD]
        self.score = float(self.box_score * (good.mean() if good.size else 0.0))


def boxes_array(boxes, image_shape) -> np.ndarray:
    """None -> the whole frame; [N, 4] xywh or [N, 5] xywh + score -> float32 [N, 5]."""
    if boxes is None:
        h, w = image_shape[:2]
        return np.array([[0, 0, w, h, 1.0]], np.float32)
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 5), np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise EdgePoseError(f"boxes must be [N, 4] (x, y, w, h) or [N, 5] with a score, got shape {arr.shape}")
    if arr.shape[1] == 4:
        arr = np.column_stack([arr, np.ones(len(arr), np.float32)])
    return arr


def find_detector(bundle_or_dir):
    """A directory of bundles that also holds a detect bundle: that directory (the detector's selector picks among
    them), else None. A single pose bundle brings no detector."""
    from edge_pose.bundle import resolve_bundles

    path = Path(bundle_or_dir) if isinstance(bundle_or_dir, (str, Path)) else None
    if path is None or not path.is_dir() or (path / "edge_pose.json").is_file():
        return None
    try:
        return path if resolve_bundles(path, task="detect").bundles else None
    except EdgePoseError:
        return None


class PoseEstimator:
    """`PoseEstimator(bundle_or_dir, device="auto", detector=...).predict(image_bgr, boxes=None) -> list[Person]`.

    Person boxes: `boxes=` when given; else the detector's (a detect bundle or directory, a Detector, or "auto":
    the detect bundle beside the pose bundles in `bundle_or_dir`, if any); else the whole frame.

    `bundle_or_dir` is a bundle or a directory of bundles (edge_pose.bundle.resolve_bundles). `flip`, `method` and
    `blur_kernel` default to the manifest's decode settings; other keyword arguments (backend, accelerator, threads,
    delegate, allow_degraded, allow_precision) go to edge_pose.select.open_best.
    """

    def __init__(self, bundle_or_dir, device: str = "auto", flip: bool | None = None, method: str | None = None,
                 blur_kernel: int | None = None, padding: float | None = None, detector="auto", **select_options):
        from edge_pose.select import open_best

        self.loaded = open_best(bundle_or_dir, device=device, **select_options)
        if isinstance(detector, str) and detector == "auto":
            detector = find_detector(bundle_or_dir)
        if isinstance(detector, (str, Path)):
            from edge_pose.detect.bundle import open_detector

            options = {k: v for k, v in select_options.items() if k in ("allow_degraded", "allow_precision",
                                                                         "threads")}
            detector = open_detector(detector, device=device, **options)
        self.detector = detector
        self._stream = None
        self.bundle = self.loaded.bundle
        self.session = self.loaded.session
        m = self.bundle.manifest
        self.manifest = m
        self.keypoints = m.keypoints
        self.input_size = m.input.size
        self.flip = m.decode.flip_test if flip is None else bool(flip)
        self.method = method or m.decode.method
        self.blur_kernel = blur_kernel or m.decode.blur_kernel
        self.padding = m.input.padding if padding is None else padding
        self.last_timings: dict[str, float] = {}

    @property
    def timings(self) -> dict[str, float]:
        return self.last_timings

    def describe(self) -> dict:
        out = {"bundle": str(self.bundle.path), "chosen": self.loaded.chosen.label(), **self.session.describe(),
               "decode": self.method, "flip_test": self.flip}
        det = getattr(self.detector, "loaded", None)
        if det is not None:
            out["detector"] = {"bundle": str(det.bundle.path), "chosen": det.chosen.label(),
                               **det.session.describe()}
        elif self.detector is not None:
            out["detector"] = type(self.detector).__name__
        return out

    def heatmaps(self, crops_bgr: np.ndarray, timings: dict | None = None) -> np.ndarray:
        """uint8 BGR crops [N, h, w, 3] -> heatmaps (N, K, H, W), flip-test fused when enabled.

        With `timings`, adds the model-input conversion to ["crop"] and sets ["infer"].
        """
        spec = self.manifest.input
        t0 = time.perf_counter()
        x = to_model_input(crops_bgr, spec)
        x_flipped = to_model_input(crops_bgr[:, :, ::-1], spec) if self.flip else None
        t1 = time.perf_counter()
        hm = self.infer_inputs(x, x_flipped)
        if timings is not None:
            timings["crop"] = timings.get("crop", 0.0) + (t1 - t0)
            timings["infer"] = time.perf_counter() - t1
        return hm

    def infer_inputs(self, x: np.ndarray, x_flipped: np.ndarray | None = None) -> np.ndarray:
        """Model-ready inputs (and their mirror images for the flip test) -> heatmaps, flip-test fused."""
        hm = self.session.infer(x)
        if x_flipped is not None:
            back = self.session.infer(x_flipped)
            hm = fuse_flip(hm, back, self.keypoints.flip_indices, shift=DECODERS[self.method].flip_shift)
        return hm

    def people_from_heatmaps(self, hm: np.ndarray, boxes: np.ndarray, centers, scales, inverse=None) -> list[Person]:
        """Heatmaps of the crops of `boxes` [N, 5] -> people in image pixels (decode, then back-projection)."""
        kp, scores = decode_heatmaps(hm, self.method, self.input_size, self.blur_kernel, layout="NCHW")
        kp_img = crop_to_image(kp, centers, scales, self.input_size, inverse=inverse)
        return [Person(kp_img[i], scores[i], boxes[i, :4].copy(), float(boxes[i, 4])) for i in range(len(boxes))]

    def _keypoints(self, crops_bgr: np.ndarray, timings: dict) -> tuple[np.ndarray, np.ndarray]:
        hm = self.heatmaps(crops_bgr, timings)
        t0 = time.perf_counter()
        kp, scores = decode_heatmaps(hm, self.method, self.input_size, self.blur_kernel, layout="NCHW")
        timings["decode"] = time.perf_counter() - t0
        return kp, scores

    def predict_crops(self, crops_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-sized uint8 BGR crops -> keypoints [N, K, 2] in crop px and scores [N, K]."""
        t0 = time.perf_counter()
        self.last_timings = {"crop": 0.0, "infer": 0.0, "decode": 0.0}
        out = self._keypoints(np.asarray(crops_bgr), self.last_timings)
        self.last_timings["total"] = time.perf_counter() - t0
        return out

    def predict_next(self, frame_bgr: np.ndarray, detect_every: int = 1) -> list[Person]:
        """People in the next frame of a stream: the detector every `detect_every` frames, boxes carried from the
        previous frame's keypoints in between (edge_pose.detect.carry). last_timings["detected"] says which."""
        from edge_pose.detect.carry import EveryN

        if self.detector is None:
            return self.predict(frame_bgr)
        if self._stream is None or self._stream.every != detect_every:
            self._stream = EveryN(self.detector, detect_every)
        t0 = time.perf_counter()
        boxes = self._stream.boxes(frame_bgr)
        spent = time.perf_counter() - t0
        people = self.predict(frame_bgr, boxes)
        self._stream.update(people, frame_bgr.shape)
        self.last_timings["detect"] = spent if self._stream.detected else 0.0
        self.last_timings["carry"] = 0.0 if self._stream.detected else spent
        self.last_timings["detected"] = self._stream.detected
        self.last_timings["total"] += spent
        return people

    def predict(self, image_bgr: np.ndarray, boxes=None) -> list[Person]:
        """People in one image; `boxes` [N, 4|5] (x, y, w, h[, score]) in image px; None: the detector's boxes,
        or the whole frame without a detector.

        last_timings (seconds): detect, crop (boxes -> model-ready tensor), infer, decode (incl. back-projection),
        total.
        """
        t0 = time.perf_counter()
        timings = self.last_timings = {"detect": 0.0, "crop": 0.0, "infer": 0.0, "decode": 0.0, "people": 0}
        if boxes is None and self.detector is not None:
            boxes = self.detector.detect(image_bgr)
            timings["detect"] = time.perf_counter() - t0
        arr = boxes_array(boxes, getattr(image_bgr, "shape", (0, 0)))
        t_crop = time.perf_counter()
        crops = crop_people(image_bgr, arr[:, :4], self.input_size, self.padding)
        timings["crop"] = time.perf_counter() - t_crop
        people = []
        if len(arr):
            hm = self.heatmaps(crops.images, timings)
            t1 = time.perf_counter()
            people = self.people_from_heatmaps(hm, arr, crops.centers, crops.scales)
            timings["decode"] = time.perf_counter() - t1
        timings["people"] = len(people)
        timings["total"] = time.perf_counter() - t0
        return people

"""Where the people are: person boxes for a top-down pose model.

A box source answers "which boxes (x, y, w, h, score) in this image?". Three ship here: the whole frame, a COCO
file (detection results, or ground-truth annotations), and OpenCV's HOG people detector. A detector model plugs in
later by implementing the same one-method `BoxSource` protocol.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_pose.errors import EdgePoseError

PERSON = 1  # COCO category id


class BoxError(EdgePoseError, ValueError):
    """A box file or detector that cannot be used; one line naming it and what is wrong."""


class BoxSource(Protocol):
    def boxes(self, image_bgr: np.ndarray, image_name: str | None = None) -> np.ndarray:
        """Person boxes in this image: float32 [N, 5] = x, y, w, h, score (image px), best first."""


def _as_boxes(rows) -> np.ndarray:
    arr = np.asarray(rows, dtype=np.float32).reshape(-1, 5)
    return arr[np.argsort(-arr[:, 4], kind="stable")]


def image_id_from_name(name: str | None) -> int | None:
    """COCO file names carry the image id: '000000000785.jpg' -> 785; None when the stem is not all digits."""
    if not name:
        return None
    stem = Path(name).stem
    match = re.fullmatch(r"(?:COCO_[a-z0-9]+_)?(\d+)", stem)
    return int(match.group(1)) if match else None


class WholeFrame:
    """One box covering the whole image: for single-person crops, webcams pointed at one person, tests."""

    def boxes(self, image_bgr: np.ndarray, image_name: str | None = None) -> np.ndarray:
        h, w = image_bgr.shape[:2]
        return _as_boxes([[0, 0, w, h, 1.0]])


class CocoBoxes:
    """Boxes from a COCO file: a detection results list, or a ground-truth file (non-crowd person annotations).

    Images are matched by id: from the ground-truth file's `images` (by file name) when it has them, else from the
    digits of a COCO file name. Detections below `score_threshold` are dropped.
    """

    def __init__(self, path: str | Path, score_threshold: float = 0.0, min_size: float = 1.0):
        self.path = Path(path)
        self.score_threshold = float(score_threshold)
        from edge_pose.cocofile import CocoFileError, check_annotations, check_detections, check_images

        data = read_json(self.path)
        ground_truth = isinstance(data, dict) and "annotations" in data
        if not ground_truth and not isinstance(data, list):
            raise BoxError(f"{self.path}: expected a COCO detection results list or a COCO file with annotations")
        self.ids_by_name: dict[str, int] = {}
        try:  # types and ranges of every field used below (ids, boxes, scores), one line naming the field
            if ground_truth:
                images = check_images(self.path, data) if "images" in data else {}
                records = [a for a in check_annotations(self.path, data, set(images) or None) if not a.get("iscrowd")]
                self.ids_by_name = {Path(img["file_name"]).name: image_id for image_id, img in images.items()}
                default_score = 1.0
            else:
                records, default_score = check_detections(self.path, data), None
        except CocoFileError as exc:
            raise BoxError(str(exc)) from None
        self.by_image: dict[int, list[list[float]]] = {}
        for i, rec in enumerate(records):
            try:
                if int(rec.get("category_id", PERSON)) != PERSON:
                    continue
                x, y, w, h = (float(v) for v in rec["bbox"])
                score = float(rec["score"]) if default_score is None else default_score
                image_id = int(rec["image_id"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise BoxError(f"{self.path}: record {i} is not a COCO box (needs image_id, bbox [x,y,w,h]"
                               f"{', score' if default_score is None else ''})") from None
            if score >= self.score_threshold and w >= min_size and h >= min_size:
                self.by_image.setdefault(image_id, []).append([x, y, w, h, score])

    def use_images_of(self, other: "CocoBoxes") -> None:
        """Match images through `other`'s images table (file name -> id) too: a detections list has no table of its
        own, and the ground truth it was made for names its images freely ('003799.jpg' may be id 1)."""
        self.ids_by_name = {**other.ids_by_name, **self.ids_by_name}

    def image_id(self, image_name: str | None) -> int | None:
        if image_name and Path(image_name).name in self.ids_by_name:
            return self.ids_by_name[Path(image_name).name]
        return image_id_from_name(image_name)

    def for_id(self, image_id: int) -> np.ndarray:
        return _as_boxes(self.by_image.get(int(image_id), []))

    def boxes(self, image_bgr: np.ndarray, image_name: str | None = None) -> np.ndarray:
        image_id = self.image_id(image_name)
        if image_id is None:
            raise BoxError(f"{self.path}: cannot tell the COCO image id of {image_name!r} (name it like "
                           f"000000000785.jpg or list it in the file's images)")
        return self.for_id(image_id)


def read_json(path: Path):
    """Parsed JSON, bounded and strict (edge_pose.cocofile); BoxError naming the file otherwise."""
    from edge_pose.cocofile import CocoFileError
    from edge_pose.cocofile import read_json as read_strict

    try:
        return read_strict(path)
    except CocoFileError as exc:
        raise BoxError(str(exc)) from None


def _hog_class():
    import cv2

    for owner in (cv2, getattr(cv2, "xobjdetect", None)):
        if owner is not None and hasattr(owner, "HOGDescriptor"):
            return owner.HOGDescriptor
    return None


class HogPeople:
    """OpenCV's HOG + linear SVM people detector (Dalal-Triggs): no model file, slow, upright people only.

    OpenCV 5 moved HOG out of the main package (opencv-contrib's xobjdetect): then this says so in one line.
    """

    def __init__(self, score_threshold: float = 0.0, win_stride: int = 8, scale: float = 1.05, nms: float = 0.45):
        import cv2

        hog_cls = _hog_class()
        if hog_cls is None:
            raise BoxError(f"HOG people detector: not in this OpenCV ({cv2.__version__}; OpenCV 5 moved it to "
                           f"opencv-contrib) - use --boxes FILE or whole-frame boxes")
        self.hog = hog_cls()
        self.hog.setSVMDetector(hog_cls.getDefaultPeopleDetector())
        self.score_threshold, self.win_stride, self.scale, self.nms = score_threshold, win_stride, scale, nms

    def boxes(self, image_bgr: np.ndarray, image_name: str | None = None) -> np.ndarray:
        import cv2

        rects, weights = self.hog.detectMultiScale(image_bgr, winStride=(self.win_stride,) * 2, padding=(8, 8),
                                                   scale=self.scale)
        if len(rects) == 0:
            return _as_boxes([])
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        scores = np.asarray(weights, np.float32).reshape(-1)
        keep = cv2.dnn.NMSBoxes(rects.tolist(), scores.tolist(), self.score_threshold, self.nms)
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        return _as_boxes(np.column_stack([rects[keep], scores[keep]]))


def box_source(spec: str | None, score_threshold: float = 0.0) -> BoxSource:
    """'frame' (or None) -> WholeFrame, 'hog' -> HogPeople, anything else is a COCO JSON file path."""
    if spec in (None, "", "frame", "whole"):
        return WholeFrame()
    if spec == "hog":
        return HogPeople(score_threshold)
    return CocoBoxes(spec, score_threshold)

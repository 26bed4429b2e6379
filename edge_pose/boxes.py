"""Where the people are: person boxes for a top-down pose model.

A box source answers "which boxes (x, y, w, h, score) in this image?". Three ship here: the whole frame, a COCO
file (detection results, or ground-truth annotations), and OpenCV's HOG people detector. A detector model plugs in
later by implementing the same one-method `BoxSource` protocol.
"""
from __future__ import annotations

import json
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
        data = read_json(self.path)
        self.ids_by_name: dict[str, int] = {}
        if isinstance(data, dict) and "annotations" in data:
            records = [a for a in data["annotations"] if isinstance(a, dict) and not a.get("iscrowd", 0)]
            for img in data.get("images", []):
                if isinstance(img, dict) and "file_name" in img and "id" in img:
                    self.ids_by_name[Path(str(img["file_name"])).name] = int(img["id"])
            default_score = 1.0
        elif isinstance(data, list):
            records, default_score = data, None
        else:
            raise BoxError(f"{self.path}: expected a COCO detection results list or a COCO file with annotations")
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
    from edge_pose.jsonio import JsonLimitError, loads

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BoxError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise BoxError(f"{path}: not a text JSON file") from None
    try:
        return loads(text)  # depth and number limits: a hostile file must not crash the reader
    except json.JSONDecodeError as exc:
        raise BoxError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except JsonLimitError as exc:
        raise BoxError(f"{path}: refused JSON ({exc})") from None


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

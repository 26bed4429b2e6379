"""COCO JSON files (keypoint ground truth, detection results) read strictly.

The file is bounded in size; NaN, Infinity, numbers beyond any image coordinate and nesting beyond the parser's
depth are refused while parsing; then the fields we use are checked for type and range. A broken file is one
CocoFileError line naming the file and the field (`annotations[12].bbox`), never a traceback from deep inside a
crop or a metric.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from edge_pose.errors import EdgePoseError

MAX_JSON_BYTES = 1 << 30  # COCO's train2017 keypoint file is 238 MB
MAX_COORD = 1e7           # image pixels; a bbox or keypoint beyond this is not from a real image


class CocoFileError(EdgePoseError, ValueError):
    """A COCO file that cannot be used; str() is one line naming the file and the field."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 18:
        raise ValueError(f"number {text[:24]}{'...' if len(text) > 24 else ''} is too large")
    return int(text)

MAX_DEPTH = 64  # a COCO file nests 4 levels; anything near this is not one


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > 1e15:
        raise ValueError(f"number {text[:24]} is out of range")
    return value


def _constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The parsed file; CocoFileError for a missing, huge, non-UTF-8, broken, non-finite or too deeply nested one."""
    path = Path(path)
    try:
        if not path.is_file():
            raise CocoFileError(f"{path}: not a regular file" if path.exists() else
                                f"{path}: cannot read (no such file)")
        with open(path, "rb") as fh:  # read(n) allocates n up front: size the read by the file, not the cap
            raw = fh.read(min(os.fstat(fh.fileno()).st_size, max_bytes) + 1)
    except OSError as exc:
        raise CocoFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise CocoFileError(f"{path}: larger than {max_bytes >> 20} MiB, not a COCO file we read")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CocoFileError(f"{path}: not a UTF-8 text JSON file") from None
    from edge_pose.jsonio import nesting_depth

    if nesting_depth(text) > MAX_DEPTH:
        raise CocoFileError(f"{path}: JSON nested too deeply (more than {MAX_DEPTH} levels)")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise CocoFileError(f"{path}: broken JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise CocoFileError(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:
        raise CocoFileError(f"{path}: {' '.join(str(exc).split())[:160]}") from None


def _is_number(v) -> bool:
    return type(v) in (int, float) and abs(v) <= MAX_COORD


def _is_id(v) -> bool:
    return type(v) is int and 0 <= v < 1 << 62


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, where: str, what: str):
        raise CocoFileError(f"{self.path}: {where}: {what}")

    def records(self, data, key: str) -> list[dict]:
        items = data.get(key, []) if isinstance(data, dict) else data
        if not isinstance(items, list):
            self.fail(key, f"expected a list, got {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.fail(f"{key}[{i}]", f"expected an object, got {type(item).__name__}")
        return items

    def field(self, where, record: dict, key: str, ok, what: str, default=None, required=True):
        if key not in record:
            if required:
                self.fail(where, f"missing '{key}'")
            return default
        value = record[key]
        if not ok(value):
            shown = json.dumps(value)[:40] if isinstance(value, (int, float, str, bool)) or value is None \
                else type(value).__name__
            self.fail(f"{where}.{key}", f"expected {what}, got {shown}")
        return value

    def bbox(self, where, record):
        return self.field(where, record, "bbox", lambda b: isinstance(b, list) and len(b) == 4 and all(
            map(_is_number, b)), f"[x, y, w, h]: 4 numbers within {MAX_COORD:.0e}")

    def keypoints(self, where, record, required: bool):
        return self.field(where, record, "keypoints", lambda k: isinstance(k, list) and len(k) % 3 == 0 and all(
            map(_is_number, k)), "a flat list of x, y, v numbers (a multiple of 3)", required=required)


def check_images(path, data) -> dict[int, dict]:
    """id -> image record; ids unique ints, file names relative paths inside the images folder."""
    c = _Checker(path)
    out: dict[int, dict] = {}
    for i, img in enumerate(c.records(data, "images")):
        where = f"images[{i}]"
        image_id = c.field(where, img, "id", _is_id, "a non-negative integer id")
        name = c.field(where, img, "file_name", lambda s: isinstance(s, str) and 0 < len(s) < 1024,
                       "a file name")
        if Path(name).is_absolute() or ".." in Path(name).parts:
            c.fail(f"{where}.file_name", f"{name[:60]!r} points outside the images folder")
        for key in ("width", "height"):
            c.field(where, img, key, lambda v: _is_id(v) and v <= MAX_COORD, "a size in pixels", required=False)
        if image_id in out:
            c.fail(where, f"image id {image_id} listed twice")
        out[image_id] = img
    return out


def check_annotations(path, data, image_ids=None, need_keypoints: bool = False, values: int | None = None
                      ) -> list[dict]:
    """Annotation records with the fields we use valid; image ids among `image_ids` when given; `keypoints`
    required where `num_keypoints` > 0 when `need_keypoints`, checked wherever present (`values` numbers long
    when given, e.g. 51 for COCO's 17 keypoints)."""
    c = _Checker(path)
    anns = c.records(data, "annotations")
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        image_id = c.field(where, ann, "image_id", _is_id, "an image id")
        if image_ids is not None and image_id not in image_ids:
            c.fail(f"{where}.image_id", f"{image_id} is not among the file's images")
        c.bbox(where, ann)
        c.field(where, ann, "id", _is_id, "an annotation id", required=False)
        c.field(where, ann, "category_id", _is_id, "a category id", required=False)
        c.field(where, ann, "iscrowd", lambda v: v in (0, 1) and type(v) in (int, bool), "0 or 1", required=False)
        c.field(where, ann, "num_keypoints", lambda v: _is_id(v) and v < 1000, "a keypoint count", required=False)
        kps = c.keypoints(where, ann, required=need_keypoints and ann.get("num_keypoints", 0) > 0)
        if values is not None and kps is not None and len(kps) != values:
            c.fail(f"{where}.keypoints", f"expected {values} numbers ({values // 3} keypoints), got {len(kps)}")
    return anns


def check_detections(path, data) -> list[dict]:
    """A detection results list: image_id, bbox, score (finite), optional category_id."""
    c = _Checker(path)
    if not isinstance(data, list):
        raise CocoFileError(f"{path}: not a COCO detection results file (expected a JSON list)")
    dets = c.records(data, "detections")
    for i, det in enumerate(dets):
        where = f"detections[{i}]"
        c.field(where, det, "image_id", _is_id, "an image id")
        c.bbox(where, det)
        c.field(where, det, "score", lambda v: type(v) in (int, float) and abs(v) <= 1e6, "a finite score",
                required=False)
        c.field(where, det, "category_id", _is_id, "a category id", required=False)
    return dets


def read_keypoints_file(path) -> dict:
    """A COCO keypoint file: `images` (non-empty) and `annotations` (default []) checked."""
    data = read_json(path)
    if not isinstance(data, dict) or "images" not in data:
        raise CocoFileError(f"{path}: not a COCO keypoint file (no 'images' list)")
    images = check_images(path, data)
    if not images:
        raise CocoFileError(f"{path}: no images listed")
    data["annotations"] = check_annotations(path, data, set(images), need_keypoints=True)
    return data

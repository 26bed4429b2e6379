"""Reading the raw material of crop sets: images, image folders, video frames and COCO JSON files.

Every failure becomes one CalibrationDataError line naming the file, because calibration data comes from users and
a cv2/json traceback tells them nothing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from calibration.cropset import CalibrationDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image, or one line saying which file is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationDataError(f"{path}: image file not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise CalibrationDataError(f"{path}: corrupt or unreadable image")
    return image


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise CalibrationDataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return images


def video_frames(path: str | Path, every_n: int = 10) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR frame) for every n-th frame; one line when the file is not a readable video."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationDataError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise CalibrationDataError(f"{path}: corrupt or unreadable video")
        index, yielded = 0, 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % max(1, every_n) == 0:
                yielded += 1
                yield index, frame
            index += 1
        if yielded == 0:
            raise CalibrationDataError(f"{path}: no frames could be decoded (corrupt or empty video)")
    finally:
        cap.release()


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationDataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CalibrationDataError(f"{path}: broken JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationDataError(f"{path}: unreadable ({exc})") from None


def read_coco_keypoints(path: str | Path) -> dict:
    """A COCO keypoint JSON checked for the parts we use (images, annotations with bbox)."""
    data = read_json(path)
    if not isinstance(data, dict) or "images" not in data:
        raise CalibrationDataError(f"{path}: not a COCO keypoint file (no 'images' list)")
    if not data["images"]:
        raise CalibrationDataError(f"{path}: no images listed")
    try:
        for img in data["images"]:
            img["id"], img["file_name"]  # noqa: B018 (presence check)
        for ann in data.get("annotations", []):
            if len(ann["bbox"]) != 4:
                raise ValueError(f"annotation {ann.get('id')} bbox has {len(ann['bbox'])} numbers")
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationDataError(f"{path}: malformed COCO data ({type(exc).__name__}: {exc})") from None
    data.setdefault("annotations", [])
    return data


def read_coco_detections(path: str | Path) -> list[dict]:
    """A COCO detection results file: a list of {image_id, bbox, score[, category_id]}; persons only."""
    data = read_json(path)
    if not isinstance(data, list):
        raise CalibrationDataError(f"{path}: not a COCO detection results file (expected a JSON list)")
    try:
        dets = [d for d in data if d.get("category_id", 1) == 1]
        for d in dets:
            d["image_id"]  # noqa: B018
            if len(d["bbox"]) != 4:
                raise ValueError("a bbox does not have 4 numbers")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CalibrationDataError(f"{path}: malformed detection results ({type(exc).__name__}: {exc})") from None
    return dets

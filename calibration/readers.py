"""Reading the raw material of crop sets: images, image folders, video frames and COCO JSON files.

Every failure becomes one CalibrationDataError line naming the file, because calibration data comes from users and
a cv2/json traceback tells them nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from calibration.cropset import CalibrationDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image, or one line saying which file is missing or corrupt."""
    from edge_pose.media import MediaError
    from edge_pose.media import read_image as read_checked

    path = Path(path)
    if not path.is_file():
        raise CalibrationDataError(f"{path}: image file not found")
    try:  # the runtime's reader: pixel limit from the header before decoding, one line for anything wrong
        return read_checked(path)
    except MediaError as exc:
        raise CalibrationDataError(str(exc)) from None


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
        from edge_pose.media import MediaError, check_video_size

        try:
            check_video_size(path, cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        except MediaError as exc:
            raise CalibrationDataError(str(exc)) from None
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


def _coco(read, *args):
    from edge_pose.cocofile import CocoFileError

    try:
        return read(*args)
    except CocoFileError as exc:
        raise CalibrationDataError(str(exc)) from None


def read_json(path: str | Path) -> Any:
    """Parsed JSON, bounded and strict (no NaN/Infinity, no absurd numbers or nesting): edge_pose.cocofile."""
    from edge_pose.cocofile import read_json as read_strict

    return _coco(read_strict, Path(path))


def read_coco_keypoints(path: str | Path) -> dict:
    """A COCO keypoint JSON checked for the parts we use (images, annotations with bbox, keypoints)."""
    from edge_pose.cocofile import read_keypoints_file

    return _coco(read_keypoints_file, Path(path))


def read_coco_detections(path: str | Path) -> list[dict]:
    """A COCO detection results file: a list of {image_id, bbox, score[, category_id]}; persons only."""
    from edge_pose.cocofile import check_detections

    data = read_json(path)
    dets = _coco(check_detections, Path(path), data)
    return [d for d in dets if d.get("category_id", 1) == 1]

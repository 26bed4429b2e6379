"""Reading images and videos, writing drawn ones, with one-line errors that name the file."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_pose.errors import EdgePoseError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class MediaError(EdgePoseError, ValueError):
    """An image or video that cannot be read or written."""


def kind_of(path: Path) -> str:
    """'dir', 'image' or 'video' from what the path is; a missing path is an error."""
    if path.is_dir():
        return "dir"
    if not path.exists():
        raise MediaError(f"{path}: no such file or directory")
    ext = path.suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    raise MediaError(f"{path}: unknown input type {ext or '(no extension)'} (images: "
                     f"{', '.join(sorted(IMAGE_EXTS))}; videos: {', '.join(sorted(VIDEO_EXTS))})")


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 image, or one line saying the file is not a readable image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise MediaError(f"{path}: not a readable image (corrupt, empty or unsupported format)")
    return image


def list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise MediaError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    return files


class VideoReader:
    """Frames of a video file, with its frame rate and size; unreadable files fail at open with one line."""

    def __init__(self, path: Path):
        self.path = path
        self.cap = cv2.VideoCapture(str(path))
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok or first is None:
            self.cap.release()
            raise MediaError(f"{path}: not a readable video (corrupt, empty or unsupported codec)")
        self._first = first
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and np.isfinite(fps) and fps > 0 else 25.0
        self.frames = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.size = first.shape[:2]

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            frame = self._first
            while frame is not None:
                yield frame
                ok, frame = self.cap.read()
                if not ok:
                    frame = None
        finally:
            self.cap.release()


class VideoWriter:
    """mp4 (mp4v) writer opened on the first frame; refuses loudly instead of writing an empty file."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.writer = path, fps, None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise MediaError(f"{self.path}: cannot write a video here (no mp4v encoder?)")
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def write_image(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise MediaError(f"{path}: cannot encode the drawn image")
    try:
        buf.tofile(str(path))
    except OSError as exc:
        raise MediaError(f"{path}: cannot write ({exc.strerror or exc})") from None

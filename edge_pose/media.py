"""Reading images and videos, writing drawn ones, with one-line errors that name the file."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_pose.errors import EdgePoseError
from edge_pose.imagecheck import ImageHeaderError, PixelLimitError, check_image
from edge_pose.imagecheck import max_pixels as imagecheck_max_pixels

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


def read_image(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """BGR uint8 image, or one line saying the file is not a readable image or declares too many pixels.

    The header is checked before decoding (edge_pose.imagecheck: format from the bytes, pixels within
    `max_pixels`, default EDGE_POSE_MAX_PIXELS or 50 Mpx); 16-bit, grey, alpha and CMYK images come out as BGR uint8.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise MediaError(f"{path}: not a regular file" if path.exists() else f"{path}: no such file")
        cap = _max_file_bytes(max_pixels)
        with open(path, "rb") as fh:  # read(n) allocates n up front: size the read by the file, not the cap
            data = fh.read(min(os.fstat(fh.fileno()).st_size, cap) + 1)
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ImageHeaderError as exc:
        raise MediaError(f"{path}: {exc}") from None
    if len(data) > cap:
        raise MediaError(f"{path}: {len(data) - 1}+ bytes is larger than any image within the pixel limit")
    return decode_image(data, str(path), max_pixels)


def decode_image(data: bytes, source: str, max_pixels: int | None = None) -> np.ndarray:
    """BGR uint8 from encoded bytes, after the header check; MediaError naming `source` otherwise."""
    if not data:
        raise MediaError(f"{source}: empty file, not an image")
    try:
        fmt, _, _ = check_image(data, max_pixels)
    except PixelLimitError as exc:
        raise MediaError(f"{source}: {exc}") from None
    except ImageHeaderError as exc:
        raise MediaError(f"{source}: not a readable image: {exc}") from None
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # our one line says it; OpenCV's WARN/ERROR lines would repeat it
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    finally:
        logging.setLogLevel(level)
    if image is None or image.size == 0:
        raise MediaError(f"{source}: not a readable image: {fmt.upper()} data corrupt or truncated")
    return image


def _max_file_bytes(max_pixels: int | None) -> int:
    """No encoded image within the pixel limit is larger than 8 bytes a pixel (16-bit RGBA, uncompressed)."""
    return 8 * imagecheck_max_pixels(max_pixels) + (1 << 20)


def check_video_size(path, width: float, height: float, max_pixels: int | None = None) -> None:
    """A video's declared frame size within the pixel limit, before any frame is decoded."""
    cap = imagecheck_max_pixels(max_pixels)
    if width * height > cap:
        raise MediaError(f"{path}: video frames of {int(height)}x{int(width)} = {width * height / 1e6:.1f} Mpx, "
                         f"over the {cap / 1e6:.1f} Mpx limit (EDGE_POSE_MAX_PIXELS raises it)")


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
        if self.cap.isOpened():
            try:
                check_video_size(path, self.cap.get(cv2.CAP_PROP_FRAME_WIDTH), self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            except (MediaError, ImageHeaderError):
                self.cap.release()
                raise
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

    def close(self) -> None:
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

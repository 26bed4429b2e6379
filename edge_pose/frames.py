"""Frame sources for a stream: read(out) decodes the next frame into `out` when it has the frame's shape (no
allocation), else returns a new array; None at the end. close() releases the source.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_pose.errors import EdgePoseError
from edge_pose.media import MediaError, check_video_size, kind_of, read_image


class VideoFrames:
    """A video file's frames; `loop` rewinds at the end (a benchmark's endless input)."""

    def __init__(self, path, loop: bool = False):
        self.path, self.name, self.loop = Path(path), Path(path).name, loop
        self.cap = cv2.VideoCapture(str(self.path))
        if not self.cap.isOpened():
            self.cap.release()
            raise MediaError(f"{self.path}: not a readable video (cannot open it)")
        try:
            check_video_size(self.path, self.cap.get(cv2.CAP_PROP_FRAME_WIDTH),
                             self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        except EdgePoseError:
            self.cap.release()
            raise
        self.frames = 0

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        ok, frame = self.cap.read(out) if out is not None else self.cap.read()
        if not ok and self.loop:
            if not self.frames:
                raise MediaError(f"{self.path}: not a readable video (no frame decodes)")
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read(out) if out is not None else self.cap.read()
        if not ok or frame is None:
            if not self.frames:
                raise MediaError(f"{self.path}: not a readable video (no frame decodes)")
            return None
        self.frames += 1
        return frame

    def close(self) -> None:
        self.cap.release()


class ImageFrames:
    """One image read from disk again for every frame (`count` times, or forever): a still camera, a benchmark."""

    def __init__(self, path, count: int | None = None):
        self.path, self.name, self.count, self.frames = Path(path), Path(path).name, count, 0

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        if self.count is not None and self.frames >= self.count:
            return None
        image = read_image(self.path)
        self.frames += 1
        if out is not None and out.shape == image.shape:
            np.copyto(out, image)
            return out
        return image

    def close(self) -> None:
        pass


def open_frames(path, loop: bool = False):
    """A video or an image as a frame source (an image repeats forever with `loop`, else gives one frame)."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "video":
        return VideoFrames(path, loop)
    if kind == "image":
        return ImageFrames(path, None if loop else 1)
    raise EdgePoseError(f"{path}: a stream reads one video or image, not a directory")

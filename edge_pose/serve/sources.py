"""Frame sources through OpenCV, and the capture thread that keeps only the newest frame.

A camera produces frames whether or not we keep up; queueing them would add latency without bound. The capture
thread overwrites one slot instead and counts every frame that was overwritten before the pipeline took it. When a
source fails (unplugged camera, stream gone, file renamed away, directory emptied) it reconnects with exponential
backoff and says so in `status()`, which /healthz reports.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_pose.errors import EdgePoseError

log = logging.getLogger("edge_pose.serve.source")

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
IMAGE_DIR_FPS = 5.0
STREAM_TIMEOUT_MS = 10000


class SourceError(EdgePoseError, IOError):
    """The source cannot deliver frames right now (the capture thread retries)."""


@dataclass
class Frame:
    index: int  # count of frames read since start (across reconnects)
    wall_time: float  # time.time() when read
    mono_time: float  # time.monotonic() when read
    image: np.ndarray  # BGR uint8 (H, W, 3)
    name: str | None = None  # file name for image directories (COCO detection files match on it)


def kind_of(uri: str) -> str:
    """camera | stream | images | video."""
    if re.fullmatch(r"\d+", uri) or uri.startswith("/dev/video"):
        return "camera"
    if uri.lower().startswith(STREAM_SCHEMES):
        return "stream"
    if Path(uri).is_dir() or uri.endswith("/"):
        return "images"
    return "video"


class VideoSource:
    """cv2.VideoCapture on a camera, stream or file; files are paced at their own rate and may loop."""

    def __init__(self, uri: str, kind: str, loop: bool, fps: float):
        self.uri, self.kind, self.loop, self.fps = uri, kind, loop, fps
        self._cap = None
        self._next_t = 0.0
        self.ended = False

    def open(self) -> None:
        import cv2

        if self.kind == "video" and not Path(self.uri).is_file():
            raise SourceError(f"{self.uri}: no such video file")
        target = int(self.uri) if self.uri.isdigit() else self.uri
        if self.kind == "stream":  # a stalled stream must fail (and reconnect), not block the capture forever
            cap = cv2.VideoCapture(target, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                         cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        else:
            cap = cv2.VideoCapture(target)
        if self.kind == "camera":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer driver-queued frames: lower latency
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.uri}: OpenCV cannot open this {self.kind}")
        if self.kind == "video" and self.fps <= 0:
            native = cap.get(cv2.CAP_PROP_FPS)
            self.fps = native if 0 < native < 1000 else 25.0
        self._cap, self._next_t = cap, time.monotonic()

    def read(self) -> np.ndarray | None:
        """The next frame; None at the end of a file that does not loop; SourceError on failure."""
        import cv2

        if self.kind == "video":
            if not Path(self.uri).exists():  # the capture may keep reading a renamed file; report it gone
                raise SourceError(f"{self.uri}: video file vanished")
            self._pace()
        ok, image = self._cap.read()
        if not ok and self.kind == "video":
            if not self.loop:
                self.ended = True
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"{self.uri}: read failed")
        return image

    def _pace(self) -> None:
        if self.fps > 0:
            now = time.monotonic()
            if self._next_t > now:
                time.sleep(self._next_t - now)
            self._next_t = max(self._next_t + 1.0 / self.fps, time.monotonic() - 1.0)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageDirSource:
    """Images of a directory in name order, at `fps`; the listing is refreshed at every pass."""

    def __init__(self, uri: str, loop: bool, fps: float):
        self.uri, self.loop = uri, loop
        self.fps = fps if fps > 0 else IMAGE_DIR_FPS
        self._files: list[Path] = []
        self._pos = 0
        self._next_t = 0.0
        self.ended = False
        self.name: str | None = None

    def _list(self) -> list[Path]:
        d = Path(self.uri)
        if not d.is_dir():
            raise SourceError(f"{self.uri}: image directory vanished")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"{self.uri}: no images in directory")
        return files

    def open(self) -> None:
        self._files, self._pos, self._next_t = self._list(), 0, time.monotonic()

    def read(self) -> np.ndarray | None:
        import cv2

        VideoSource._pace(self)
        if self._pos >= len(self._files):
            if not self.loop:
                self.ended = True
                return None
            self._files, self._pos = self._list(), 0
        path = self._files[self._pos]
        self._pos += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        self.name = path.name
        if image is None:
            raise SourceError(f"{path}: cannot read image (gone or not an image)")
        return image

    def close(self) -> None:
        self._files = []


def open_source(uri: str, loop: bool = True, fps: float = 0.0):
    kind = kind_of(uri)
    if kind == "images":
        return ImageDirSource(uri, loop, fps)
    return VideoSource(uri, kind, loop, fps)


class Capture(threading.Thread):
    """Reads frames into a one-slot mailbox; reconnects with backoff; counts reads, drops and reconnects."""

    def __init__(self, uri: str, loop: bool = True, fps: float = 0.0, backoff: tuple[float, float] = (0.5, 10.0),
                 on_read=None, on_drop=None):
        super().__init__(name="capture", daemon=True)
        self.uri, self.kind = uri, kind_of(uri)
        self._loop, self._fps, self._backoff = loop, fps, backoff
        self._on_read, self._on_drop = on_read or (lambda: None), on_drop or (lambda: None)
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._halt = threading.Event()
        self.frames_read = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self.state = "starting"  # starting | streaming | reconnecting | ended | stopped
        self.last_error = ""
        self.last_error_time = 0.0
        self.connected_since = 0.0

    def status(self) -> dict:
        return {"uri": self.uri, "kind": self.kind, "state": self.state, "frames_read": self.frames_read,
                "frames_dropped": self.frames_dropped, "reconnects": self.reconnects,
                "last_error": self.last_error, "last_error_time": self.last_error_time,
                "connected_since": self.connected_since}

    def latest(self, timeout: float) -> Frame | None:
        """Take the newest frame (waiting up to timeout); each frame is handed out once."""
        with self._cond:
            if self._slot is None:
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            return frame

    def stop(self) -> None:
        self._halt.set()
        with self._cond:
            self._cond.notify_all()

    def _put(self, image: np.ndarray, name: str | None) -> None:
        self.frames_read += 1
        self._on_read()
        frame = Frame(self.frames_read, time.time(), time.monotonic(), image, name)
        with self._cond:
            if self._slot is not None:
                self.frames_dropped += 1
                self._on_drop()
            self._slot = frame
            self._cond.notify()

    def _fail(self, message: str) -> None:
        self.state, self.last_error, self.last_error_time = "reconnecting", message, time.time()

    def run(self) -> None:
        delay = self._backoff[0]
        while not self._halt.is_set():
            source = open_source(self.uri, self._loop, self._fps)
            try:
                source.open()
                if self.state == "reconnecting":
                    self.reconnects += 1
                    log.warning("source %s: reconnected (after: %s)", self.uri, self.last_error)
                else:
                    log.info("source %s: opened (%s)", self.uri, self.kind)
                self.state, self.connected_since, delay = "streaming", time.time(), self._backoff[0]
                while not self._halt.is_set():
                    image = source.read()
                    if image is None:
                        self.state = "ended"
                        log.info("source %s: end of input (loop = false)", self.uri)
                        self._halt.wait()
                        break
                    self._put(image, getattr(source, "name", None))
            except SourceError as exc:
                self._fail(str(exc))
            except Exception as exc:  # an OpenCV error must not kill the capture thread
                self._fail(f"{self.uri}: {type(exc).__name__}: {exc}")
            finally:
                source.close()
            if self._halt.is_set():
                break
            log.warning("source failed: %s; retrying in %.1f s", self.last_error, delay)
            self._halt.wait(delay)
            delay = min(delay * 2, self._backoff[1])
        self.state = "stopped"

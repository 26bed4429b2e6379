"""The results hub: the latest result (and its frame) for polling, and server-sent-event streams for pushing.

Each stream client gets a small bounded queue: a slow client cannot grow memory or stall the pipeline; when its
queue is full the oldest event is dropped and counted (the SSE `id:` field is the result sequence number, so a client
sees the gap too).
"""
from __future__ import annotations

import collections
import threading

import numpy as np

from edge_pose import jsonio


class Subscriber:
    def __init__(self, hub: "Hub", maxlen: int):
        self._hub = hub
        self._queue: collections.deque = collections.deque()
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self.closed = False
        self.dropped = 0

    def push(self, seq: int, line: str) -> bool:
        """Queue one event; False when the oldest had to be dropped to make room."""
        with self._cond:
            ok = len(self._queue) < self._maxlen
            if not ok:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((seq, line))
            self._cond.notify()
            return ok

    def get(self, timeout: float) -> tuple[int, str] | None:
        """The next event, or None after `timeout` s or when the hub closes (check `closed`)."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._hub.unsubscribe(self)


def sse_event(seq: int, line: str, event: str = "poses") -> bytes:
    return f"id: {seq}\nevent: {event}\ndata: {line}\n\n".encode()


SSE_KEEPALIVE = b": keepalive\n\n"


class Hub:
    """publish(result, frame) -> seq; keeps the newest result and frame; fans out to stream clients and sinks."""

    def __init__(self, sinks=(), sse_queue: int = 32, on_sse_drop=None):
        self._lock = threading.Lock()
        self._subs: list[Subscriber] = []
        self._sinks = list(sinks)
        self._sse_queue = sse_queue
        self._on_sse_drop = on_sse_drop or (lambda: None)
        self.seq = 0
        self.latest: dict | None = None
        self.latest_line: str | None = None
        self.latest_frame: np.ndarray | None = None
        self._jpeg_cache: tuple[int, bytes] | None = None
        self.closed = False

    def add_sink(self, sink) -> None:
        self._sinks.append(sink)

    def publish(self, result: dict, frame: np.ndarray | None = None) -> int:
        with self._lock:
            result["seq"] = self.seq + 1
            line = jsonio.dumps(result, separators=(",", ":"))  # ValueError on NaN: the frame fails, counted
            self.seq += 1
            self.latest, self.latest_line, self.latest_frame = result, line, frame
            subs = list(self._subs)
        for sub in subs:
            if not sub.push(result["seq"], line):
                self._on_sse_drop()
        for sink in self._sinks:
            sink.submit(result["seq"], line)
        return result["seq"]

    def snapshot(self) -> tuple[int, str | None, np.ndarray | None]:
        with self._lock:
            return self.seq, self.latest_line, self.latest_frame

    def jpeg(self, quality: int) -> tuple[int, bytes] | None:
        """The latest frame as JPEG, encoded once per result."""
        import cv2

        with self._lock:
            seq, frame, cached = self.seq, self.latest_frame, self._jpeg_cache
        if frame is None:
            return None
        if cached and cached[0] == seq:
            return cached
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            return None
        self._jpeg_cache = (seq, buf.tobytes())
        return self._jpeg_cache

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self, self._sse_queue)
        with self._lock:
            if self.closed:
                sub.close()
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        with self._lock:
            self.closed = True
            subs = list(self._subs)
        for sub in subs:
            sub.close()

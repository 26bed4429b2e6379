"""JSON-lines file sink: one result per line, size-based rotation (path, path.1 .. path.N), flushed on a timer and
on stop. A write that fails (disk full, directory gone) is counted as dropped and logged, never ignored.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("edge_pose.serve.jsonl")


class JsonlSink:
    name = "jsonl"

    def __init__(self, path: str, max_bytes: int = 50 * 1024 * 1024, backups: int = 5, flush_s: float = 1.0):
        self.path = Path(path)
        self.max_bytes, self.backups, self.flush_s = max_bytes, backups, flush_s
        self._lock = threading.Lock()
        self._file = None
        self._size = 0
        self._last_flush = time.monotonic()
        self._last_error_log = 0.0
        self.written = 0
        self.dropped = 0
        self.last_drop_time = 0.0
        self._closed = False
        self.rotations = 0
        self.last_error = ""

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8")
        self._size = self._file.tell()

    def _rotate(self) -> None:
        self._file.close()
        self._file = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.rotations += 1
        log.info("jsonl: rotated %s (rotation %d)", self.path, self.rotations)

    def submit(self, seq: int, line: str) -> None:
        data = line + "\n"
        with self._lock:
            if self._closed:  # a result published after stop: say so rather than reopen the file
                self.dropped += 1
                self.last_drop_time = time.time()
                log.warning("jsonl: result %d arrived after the sink closed; dropped", seq)
                return
            try:
                if self._file is None:
                    self._open()
                if self._size > 0 and self._size + len(data) > self.max_bytes:
                    self._rotate()
                    self._open()
                self._file.write(data)
                self._size += len(data)
                self.written += 1
                if time.monotonic() - self._last_flush >= self.flush_s:
                    self._flush_locked()
            except OSError as exc:
                self.dropped += 1
                self.last_drop_time = time.time()
                self.last_error = f"{self.path}: {exc.strerror or exc}"
                if self._file is not None:
                    try:
                        self._file.close()
                    except OSError:
                        pass
                    self._file = None
                if time.monotonic() - self._last_error_log > 10:
                    self._last_error_log = time.monotonic()
                    log.error("jsonl: write failed, result %d dropped (%d so far): %s", seq, self.dropped,
                              self.last_error)

    def _flush_locked(self) -> None:
        if self._file is not None:
            self._file.flush()
        self._last_flush = time.monotonic()

    def maintain(self) -> None:
        """Called periodically by the daemon: flush lines older than flush_s even when no new result arrives."""
        with self._lock:
            if time.monotonic() - self._last_flush >= self.flush_s:
                try:
                    self._flush_locked()
                except OSError as exc:
                    self.last_error = f"{self.path}: {exc.strerror or exc}"

    def close(self, timeout: float = 0.0) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                try:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                    self._file.close()
                except OSError as exc:
                    log.error("jsonl: final flush of %s failed: %s", self.path, exc)
                self._file = None
        log.info("jsonl: %d lines written to %s, %d dropped, %d rotations", self.written, self.path,
                 self.dropped, self.rotations)

    def status(self) -> dict:
        return {"path": str(self.path), "written": self.written, "dropped": self.dropped,
                "last_drop_time": self.last_drop_time, "rotations": self.rotations, "last_error": self.last_error}

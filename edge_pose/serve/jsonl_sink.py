"""JSON-lines file sink: one result per line, size-based rotation (path, path.1 .. path.N), written out on a timer
and on stop.

Lines wait in memory for at most `flush_s` (and at most BUFFER_BYTES) and are then appended with plain os.write
calls. A write that fails (disk full, file size limit, read-only or immutable file, directory gone) is undone
(the file is truncated back to its last whole line, so a half-written line never looks like a result), every line
of the failed batch is counted as dropped, and the sink reports `writing: false` until a later write succeeds: it
retries at every flush, so it recovers by itself when the disk is writable again. SIGHUP reopens the file.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("edge_pose.serve.jsonl")

BUFFER_BYTES = 1 << 20  # write out early past this much buffered text
ERROR_LOG_EVERY_S = 10.0


class JsonlSink:
    name = "jsonl"

    def __init__(self, path: str, max_bytes: int = 50 * 1024 * 1024, backups: int = 5, flush_s: float = 1.0):
        self.path = Path(path)
        self.max_bytes, self.backups, self.flush_s = max_bytes, backups, flush_s
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._pending: list[tuple[int, bytes]] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        self._last_error_log = 0.0
        self.written = 0
        self.dropped = 0
        self.last_drop_time = 0.0
        self._closed = False
        self.rotations = 0
        self.writing = True  # False from a failed write until the next one that succeeds
        self.last_error = ""
        self.failures = 0

    # file --------------------------------------------------------------------------------------------------
    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._size = os.fstat(self._fd).st_size

    def _close_fd(self, sync: bool = False) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        self._close_fd(sync=True)
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

    def _append(self, data: bytes) -> None:
        """All of `data` or nothing: a short or failed write is truncated away and raised as OSError."""
        start = self._size
        done = 0
        try:
            while done < len(data):
                n = os.write(self._fd, data[done:])
                if n <= 0:
                    raise OSError(0, "write made no progress")
                done += n
        except OSError:
            if done:
                try:
                    os.ftruncate(self._fd, start)
                except OSError as exc:  # cannot undo: the next reader sees a cut line; say so
                    log.error("jsonl: cannot truncate %s back to %d bytes after a failed write: %s", self.path,
                              start, exc)
            raise
        self._size += len(data)

    # buffer ------------------------------------------------------------------------------------------------
    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        i = 0
        try:
            if self._fd is None and batch:
                self._open()
            while i < len(batch):
                # the lines that fit before the next rotation go out in one write
                j, size = i, 0
                while j < len(batch) and (self._size + size + len(batch[j][1]) <= self.max_bytes or
                                          (self._size == 0 and j == i)):
                    size += len(batch[j][1])
                    j += 1
                if j == i:
                    self._rotate()
                    self._open()
                    continue
                self._append(b"".join(line for _, line in batch[i:j]))
                self.written += j - i
                i = j
        except OSError as exc:
            self._failed(exc, batch[i:])
            return
        if batch and not self.writing:
            log.warning("jsonl: writing %s again after %d failed writes (%d lines dropped so far)", self.path,
                        self.failures, self.dropped)
        if batch:
            self.writing, self.last_error = True, ""

    def _failed(self, exc: OSError, lost: list[tuple[int, bytes]]) -> None:
        self.dropped += len(lost)
        self.failures += 1
        self.last_drop_time = time.time()
        self.last_error = f"{self.path}: {exc.strerror or exc}"
        self.writing = False
        try:
            self._close_fd()  # reopened at the next flush: the file may have been replaced or fixed meanwhile
        except OSError:
            pass
        if time.monotonic() - self._last_error_log > ERROR_LOG_EVERY_S:
            self._last_error_log = time.monotonic()
            first = lost[0][0] if lost else "?"
            log.error("jsonl: write failed, %d results from %s dropped (%d so far): %s", len(lost), first,
                      self.dropped, self.last_error)

    # public ------------------------------------------------------------------------------------------------
    def submit(self, seq: int, line: str) -> None:
        data = (line + "\n").encode()
        with self._lock:
            if self._closed:  # a result published after stop: say so rather than reopen the file
                self.dropped += 1
                self.last_drop_time = time.time()
                log.warning("jsonl: result %d arrived after the sink closed; dropped", seq)
                return
            self._pending.append((seq, data))
            self._pending_bytes += len(data)
            if self._pending_bytes >= BUFFER_BYTES or time.monotonic() - self._last_flush >= self.flush_s:
                self._flush_locked()

    def maintain(self) -> None:
        """Called periodically by the daemon: write out lines older than flush_s even when no new result arrives."""
        with self._lock:
            if not self._closed and time.monotonic() - self._last_flush >= self.flush_s:
                self._flush_locked()

    def reopen(self) -> None:
        """Close the file so that the next write opens `path` again (after logrotate moved it away)."""
        with self._lock:
            self._flush_locked()
            try:
                self._close_fd(sync=True)
            except OSError as exc:
                self.last_error = f"{self.path}: {exc.strerror or exc}"
        log.info("jsonl: reopening %s", self.path)

    def reconfigure(self, path: str, max_bytes: int, backups: int, flush_s: float) -> None:
        with self._lock:
            self._flush_locked()
            try:
                self._close_fd(sync=True)
            except OSError as exc:
                self.last_error = f"{self.path}: {exc.strerror or exc}"
            if Path(path) != self.path:
                log.info("jsonl: now writing to %s (was %s)", path, self.path)
            self.path = Path(path)
            self.max_bytes, self.backups, self.flush_s = max_bytes, backups, flush_s

    def close(self, timeout: float = 0.0) -> None:
        with self._lock:
            self._flush_locked()
            self._closed = True
            try:
                self._close_fd(sync=True)
            except OSError as exc:
                log.error("jsonl: final sync of %s failed: %s", self.path, exc)
        log.info("jsonl: %d lines written to %s, %d dropped, %d rotations", self.written, self.path,
                 self.dropped, self.rotations)

    def status(self) -> dict:
        return {"path": str(self.path), "writing": self.writing, "written": self.written, "dropped": self.dropped,
                "pending": len(self._pending), "failures": self.failures, "last_drop_time": self.last_drop_time,
                "rotations": self.rotations, "last_error": self.last_error}

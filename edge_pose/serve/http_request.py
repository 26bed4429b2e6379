"""What the HTTP API reads from a client, bounded: the socket's read side with one deadline and one byte budget per
phase, the bearer token compared in constant time, and the `boxes` query; errors as HttpError (status + one line).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import math
import socket
import time


class HttpError(Exception):
    def __init__(self, code: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers or {}


def parse_boxes(text: str, max_boxes: int) -> list[list[float]]:
    """'x,y,w,h;x,y,w,h' -> boxes; HttpError 413 past max_boxes (counted before parsing), 400 when malformed."""
    parts = [p for p in text.split(";") if p]
    if len(parts) > max_boxes:
        raise HttpError(413, f"boxes: {len(parts)} boxes exceed the limit of {max_boxes} ([persons] max_people)")
    boxes = []
    for part in parts:
        try:
            box = [float(v) for v in part.split(",")]
        except ValueError:
            raise HttpError(400, f"boxes: {part[:40]!r} is not x,y,w,h numbers") from None
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
            raise HttpError(400, f"boxes: {part[:40]!r} must be finite x,y,w,h with w, h > 0")
        boxes.append(box)
    if not boxes:
        raise HttpError(400, "boxes: empty")
    return boxes


class HeaderTooLarge(Exception):
    """The request line and headers exceed max_header_bytes."""


class DeadlineReader(io.RawIOBase):
    """The socket's read side with a deadline and a byte budget per phase (headers, then body).

    A plain socket timeout applies to each recv, so a client sending one byte a second would never time out; here
    the whole phase has one deadline. Writes get `write_timeout` (the socket timeout is reset after every read).
    """

    def __init__(self, sock: socket.socket, write_timeout: float):
        self.sock, self.write_timeout = sock, write_timeout
        self.deadline = time.monotonic() + 5.0
        self.budget: int | None = None
        self.got = 0  # bytes received since arm()

    def arm(self, seconds: float, budget: int | None) -> None:
        self.deadline, self.budget, self.got = time.monotonic() + seconds, budget, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.budget is not None and self.budget <= 0:
            raise HeaderTooLarge()
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("client too slow")
        want = len(buf) if self.budget is None else min(len(buf), self.budget)
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(buf, want)
        finally:
            self.sock.settimeout(self.write_timeout)
        if self.budget is not None:
            self.budget -= n
        self.got += n
        return n


def token_matches(header: str, token: str) -> bool:
    """`Bearer TOKEN`, or `Basic base64(any-user:TOKEN)`; compared as digests in constant time (no length leak)."""
    scheme, _, value = header.strip().partition(" ")
    got = value.strip().encode()
    if scheme.lower() == "basic":
        try:
            got = base64.b64decode(got, validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(hashlib.sha256(got).digest(), hashlib.sha256(token.encode()).digest())

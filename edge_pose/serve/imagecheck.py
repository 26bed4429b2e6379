"""Image size from the file header, before decoding: a small PNG can declare 100000 x 100000 pixels, and decoding
it first would be the denial of service the pixel limit exists to stop.
"""
from __future__ import annotations

import struct

# JPEG start-of-frame markers that carry the frame size (not DHT C4, JPG C8, DAC CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageHeaderError(ValueError):
    """The bytes are not an image this server accepts (str: one line)."""


def image_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageHeaderError("corrupt JPEG header (marker expected)")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if length < 2:
            raise ImageHeaderError("corrupt JPEG header (segment length)")
        if marker in _SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return h, w
        i += 2 + length
    raise ImageHeaderError("truncated JPEG (no frame header)")


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, height, width) read from the header; ImageHeaderError when unknown or malformed."""
    fmt = image_format(data)
    if fmt is None:
        raise ImageHeaderError("not a JPEG, PNG, BMP or WebP image")
    if fmt == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageHeaderError("truncated PNG header")
        w, h = struct.unpack(">II", data[16:24])
    elif fmt == "jpeg":
        h, w = _jpeg_size(data)
    elif fmt == "bmp":
        if len(data) < 26:
            raise ImageHeaderError("truncated BMP header")
        w, h = struct.unpack("<ii", data[18:26])
        h = abs(h)
    else:  # webp: VP8 / VP8L / VP8X chunks
        chunk = data[12:16]
        if chunk == b"VP8X" and len(data) >= 30:
            w = 1 + int.from_bytes(data[24:27], "little")
            h = 1 + int.from_bytes(data[27:30], "little")
        elif chunk == b"VP8 " and len(data) >= 30:
            w, h = (v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
        elif chunk == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        else:
            raise ImageHeaderError("truncated or unknown WebP header")
    if h <= 0 or w <= 0:
        raise ImageHeaderError(f"image declares {h}x{w} pixels")
    return fmt, int(h), int(w)

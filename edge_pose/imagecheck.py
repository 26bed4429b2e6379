"""Image size from the file header, before decoding: a small PNG can declare 100000 x 100000 pixels, and decoding
it first would be the denial of service the pixel limit exists to stop.

Pure bytes-in, facts-out (no OpenCV, no numpy), so the HTTP server can use it on a request body and every file reader
(predict, calibration) on a file before it decodes. The format is told by the bytes, never by the file name.
"""
from __future__ import annotations

import os
import struct

from edge_pose.errors import EdgePoseError

DEFAULT_MAX_PIXELS = 50_000_000  # height * width; a 50 Mpx photo is larger than any camera frame a pose model needs
MAX_PIXELS_ENV = "EDGE_POSE_MAX_PIXELS"
FORMATS = "JPEG, PNG, BMP, WebP or TIFF"

# JPEG start-of-frame markers that carry the frame size (not DHT C4, JPG C8, DAC CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageHeaderError(EdgePoseError, ValueError):
    """The bytes are not an image we accept, or declare too many pixels (str: one line, without the file name)."""


class PixelLimitError(ImageHeaderError):
    """A well-formed header declaring more pixels than the limit."""


def image_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _jpeg_scan(data: bytes) -> tuple[int, int, int]:
    """(height, width, offset of the first scan or -1) from the frame header; walks segments, not entropy data."""
    i, n = 2, len(data)
    size = None
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
            size = struct.unpack(">HH", data[i + 5:i + 9])
        elif marker == 0xDA:  # start of scan: the frame header must have come first
            if size is None:
                raise ImageHeaderError("corrupt JPEG (scan before frame header)")
            return size[0], size[1], i
        i += 2 + length
    if size is None:
        raise ImageHeaderError("truncated JPEG (no frame header)")
    return size[0], size[1], -1


def _tiff_size(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        raise ImageHeaderError("truncated TIFF header")
    ifd = struct.unpack(order + "L", data[4:8])[0]
    if ifd + 2 > len(data):
        raise ImageHeaderError("truncated TIFF (first directory past the end of the file)")
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    if ifd + 2 + 12 * count > len(data):
        raise ImageHeaderError("truncated TIFF directory")
    found = {}
    for k in range(count):
        tag, kind, _n = struct.unpack(order + "HHL", data[ifd + 2 + 12 * k:ifd + 10 + 12 * k])
        if tag in (256, 257):
            raw = data[ifd + 10 + 12 * k:ifd + 14 + 12 * k]
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "L"), raw[:2] if kind == 3 else raw)[0]
    if 256 not in found or 257 not in found:
        raise ImageHeaderError("TIFF without image width and length")
    return found[257], found[256]


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, height, width) read from the header; ImageHeaderError when unknown or malformed."""
    fmt = image_format(data)
    if fmt is None:
        raise ImageHeaderError(f"not a {FORMATS} image")
    if fmt == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageHeaderError("truncated PNG header")
        w, h = struct.unpack(">II", data[16:24])
    elif fmt == "jpeg":
        h, w, _ = _jpeg_scan(data)
    elif fmt == "bmp":
        if len(data) < 26:
            raise ImageHeaderError("truncated BMP header")
        w, h = struct.unpack("<ii", data[18:26])
        h = abs(h)
    elif fmt == "tiff":
        h, w = _tiff_size(data)
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


def max_pixels(limit: int | None = None) -> int:
    """The pixel limit: `limit` when given, else EDGE_POSE_MAX_PIXELS, else DEFAULT_MAX_PIXELS."""
    if limit is not None:
        return int(limit)
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ImageHeaderError(f"{MAX_PIXELS_ENV}={text[:20]!r} is not a positive number of pixels")
    return int(text)


def check_image(data: bytes, limit: int | None = None) -> tuple[str, int, int]:
    """(format, height, width) once the header is valid, within `limit` pixels and, for JPEG, the file complete.

    A JPEG cut short still decodes (the missing rows grey), so it must end its scan with an end-of-image marker
    (FF D9 never occurs inside entropy-coded data; one inside an EXIF thumbnail comes before the scan).
    """
    fmt, h, w = image_size(data)
    cap = max_pixels(limit)
    if h * w > cap:
        raise PixelLimitError(f"{fmt.upper()} declares {h}x{w} = {h * w / 1e6:.1f} Mpx, over the {cap / 1e6:.1f} Mpx "
                              f"limit ({MAX_PIXELS_ENV} raises it)")
    if fmt == "jpeg":
        scan = _jpeg_scan(data)[2]
        if scan < 0 or data.rfind(b"\xff\xd9") < scan:
            raise ImageHeaderError("truncated JPEG (no end-of-image marker after its scan)")
    return fmt, h, w

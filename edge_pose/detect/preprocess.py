"""A whole frame -> the detector's input tensor, and the geometry that maps boxes back to frame pixels.

Two resize modes: `stretch` (both axes scaled independently to the input size, as TF Object Detection API SSDs
do) and `letterbox` (one scale keeping the aspect ratio, the rest padded: `corner` puts the image top-left as
mmdet/rtmlib's YOLOX does, `center` splits the padding as ultralytics does). Stretch has two sampling grids:
`half_pixel` (cv2.resize, pixel centres at +0.5: PyTorch-trained models) and `tf_legacy` (TF1 ResizeBilinear with
align_corners=False and half_pixel_centers=False: output pixel i reads input i * in/out; what TF1 SSD graphs do in
their own Preprocessor, reproduced here in the same float order so the cut graph sees the same tensor).

Sizes are (height, width).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_pose.errors import EdgePoseError

RESIZES = ("stretch", "letterbox")
SAMPLINGS = ("half_pixel", "tf_legacy")
PADS = ("corner", "center")


class DetectInputError(EdgePoseError, ValueError):
    """An image the detector cannot take; one line saying what is wrong."""


@dataclass(frozen=True)
class Geometry:
    """Where the frame went in the input: input = frame * scale + pad (per axis), both (y, x) ordered."""

    image_size: tuple[int, int]  # (h, w) of the original frame
    input_size: tuple[int, int]  # (h, w) of the detector input
    scale: tuple[float, float]  # (sy, sx): input px per frame px
    pad: tuple[float, float]  # (top, left) input px

    def to_image(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Boxes [N, 4] x1, y1, x2, y2 in input px -> frame px (not clipped)."""
        b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        sy, sx = self.scale
        top, left = self.pad
        off = np.array([left, top, left, top], np.float32)
        div = np.array([sx, sy, sx, sy], np.float32)
        return (b - off) / div


def _resize_tf_legacy(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False) of an HWC image, float32.

    Same arithmetic as TensorFlow's kernel: source coordinate out_index * (in / out), corners clamped, interpolated
    along x first (top and bottom rows), then along y.
    """
    in_h, in_w = img.shape[:2]
    out_h, out_w = out_hw
    ys = np.arange(out_h, dtype=np.float32) * np.float32(in_h / out_h)
    xs = np.arange(out_w, dtype=np.float32) * np.float32(in_w / out_w)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, in_h - 1)
    x1 = np.minimum(x0 + 1, in_w - 1)
    wy = (ys - y0.astype(np.float32))[:, None, None]
    wx = (xs - x0.astype(np.float32))[None, :, None]
    # gather the four corners as uint8 (a quarter of the bytes), then interpolate in float32
    rows0, rows1 = np.take(img, y0, axis=0), np.take(img, y1, axis=0)
    tl, tr = np.take(rows0, x0, axis=1).astype(np.float32), np.take(rows0, x1, axis=1).astype(np.float32)
    bl, br = np.take(rows1, x0, axis=1).astype(np.float32), np.take(rows1, x1, axis=1).astype(np.float32)
    # in place, in TF's order: top = tl + (tr - tl) * wx, bottom likewise, out = top + (bottom - top) * wy
    tr -= tl
    tr *= wx
    tr += tl
    br -= bl
    br *= wx
    br += bl
    br -= tr
    br *= wy
    br += tr
    return br


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        shape = getattr(image, "shape", None)
        raise DetectInputError(f"detector input: expected an image array (h, w, 3), got shape {shape}")
    if image.dtype != np.uint8:
        raise DetectInputError(f"detector input: expected uint8 pixels, got {image.dtype}")
    return image


def prepare(image_bgr: np.ndarray, input_size: tuple[int, int], *, resize: str = "stretch",
            sampling: str = "half_pixel", pad: str = "corner", pad_value: float = 114.0, color: str = "rgb",
            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), layout: str = "NHWC") -> tuple[np.ndarray, Geometry]:
    """One BGR uint8 frame -> (batch [1, ...] float32 in `layout`, Geometry).

    mean/std are in 0..255 pixel units, per channel in the model's colour order: input = (pixel - mean) / std
    ([-1, 1] scaling is mean 127.5, std 127.5; raw 0..255 pixels are mean 0, std 1).
    """
    import cv2

    img = _check_image(image_bgr)
    h, w = img.shape[:2]
    in_h, in_w = (int(v) for v in input_size)
    if resize == "stretch":
        if sampling == "tf_legacy":
            out = _resize_tf_legacy(img, (in_h, in_w))
        else:
            out = cv2.resize(img, (in_w, in_h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        geom = Geometry((h, w), (in_h, in_w), (in_h / h, in_w / w), (0.0, 0.0))
    else:
        r = min(in_h / h, in_w / w)
        new_h, new_w = max(1, min(in_h, int(round(h * r)))), max(1, min(in_w, int(round(w * r))))
        top, left = ((in_h - new_h) // 2, (in_w - new_w) // 2) if pad == "center" else (0, 0)
        out = np.full((in_h, in_w, 3), pad_value, dtype=np.float32)
        resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        out[top:top + new_h, left:left + new_w] = resized
        geom = Geometry((h, w), (in_h, in_w), (new_h / h, new_w / w), (float(top), float(left)))
    if color == "rgb":  # after resizing: per-channel ops commute with the channel order, and the image is smaller
        out = out[:, :, ::-1]
    # x * (1 / std) - mean / std: one multiply-add, and for [-1, 1] scaling exactly TF's x * (2 / 255) - 1
    scale = (1 / np.asarray(std, np.float64)).astype(np.float32)
    offset = (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)
    x = out * scale
    x += offset
    x = x.transpose(2, 0, 1) if layout == "NCHW" else x
    return np.ascontiguousarray(x[None], dtype=np.float32), geom

"""Person box -> affine crop -> the exact tensor the model takes, and crop pixels -> image pixels.

Same geometry as mmpose's top-down pipeline (bbox_xywh2cs with padding 1.25, aspect ratio fixed to the model input,
get_warp_matrix, TopdownAffine with cv2.warpAffine INTER_LINEAR), so that heatmaps match what the model was trained
on. mmpose writes sizes as (w, h); here every size and scale is (h, w), as numpy shapes are.

The warp is a similarity (scale, rotation, translation), so it is written in closed form and vectorised over people
instead of calling cv2.getAffineTransform per box.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_pose.bundle import InputSpec
from edge_pose.errors import EdgePoseError

INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
FLOAT_DTYPES = ("float32", "float16")


@dataclass
class Crops:
    """People cropped from one image: the crops and the geometry needed to map keypoints back."""

    images: np.ndarray  # uint8 [N, h, w, 3] BGR
    centers: np.ndarray  # float32 [N, 2] (x, y) image px
    scales: np.ndarray  # float32 [N, 2] (h, w) image px covered by the crop
    rotations: np.ndarray  # float32 [N] degrees

    def __len__(self) -> int:
        return len(self.images)


def _as_boxes(boxes_xywh) -> np.ndarray:
    boxes = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
    return boxes


def fix_aspect(scales_hw: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Grow the short side so that h / w equals the model input's h / w (mmpose's _fix_aspect_ratio)."""
    scales_hw = np.asarray(scales_hw, dtype=np.float32).reshape(-1, 2)
    h, w = scales_hw[:, 0], scales_hw[:, 1]
    aspect = np.float32(input_size[1] / input_size[0])  # w / h
    wider = w > h * aspect
    return np.stack([np.where(wider, w / aspect, h), np.where(wider, w, h * aspect)], axis=1).astype(np.float32)


def box_to_center_scale(boxes_xywh, input_size: tuple[int, int] | None, padding: float = 1.25):
    """Boxes (x, y, w, h) -> centers [N, 2] (x, y) and scales [N, 2] (h, w), padded, aspect fixed to input_size.

    `input_size=None` skips the aspect fix (mmpose's bbox_xywh2cs alone).
    """
    boxes = _as_boxes(boxes_xywh)
    centers = boxes[:, :2] + boxes[:, 2:] * np.float32(0.5)
    scales = boxes[:, [3, 2]] * np.float32(padding)
    if input_size is not None:
        scales = fix_aspect(scales, input_size)
    return centers.astype(np.float32), scales.astype(np.float32)


def warp_matrices(centers, scales_hw, output_size_hw, rots=None, inv: bool = False) -> np.ndarray:
    """Affine matrices [N, 2, 3] mapping image -> crop (or crop -> image with `inv`).

    As mmpose's get_warp_matrix with fixed aspect ratio: only the scale's width sets the zoom
    (output width / scale width); the crop centre maps to the output centre; `rots` (degrees) turn the source
    window counter-clockwise in the image.
    """
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    scales_hw = np.asarray(scales_hw, dtype=np.float64).reshape(-1, 2)
    n = len(centers)
    rot = np.zeros(n) if rots is None else np.broadcast_to(np.asarray(rots, dtype=np.float64), (n,))
    out_h, out_w = output_size_hw
    theta = np.deg2rad(rot)
    cos, sin = np.cos(theta), np.sin(theta)
    dst_center = np.array([out_w * 0.5, out_h * 0.5])
    m = np.empty((n, 2, 3))
    if not inv:
        s = out_w / scales_hw[:, 1]
        # p_crop = s * R(-theta) (p_img - center) + dst_center
        lin = s[:, None, None] * np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)
        m[:, :, :2] = lin
        m[:, :, 2] = dst_center - np.einsum("nij,nj->ni", lin, centers)
    else:
        s = scales_hw[:, 1] / out_w
        # p_img = (1/s) R(theta) (p_crop - dst_center) + center
        lin = s[:, None, None] * np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
        m[:, :, :2] = lin
        m[:, :, 2] = centers - lin @ dst_center
    return m


def warp_matrix(center, scale_hw, output_size_hw, rot: float = 0.0, inv: bool = False) -> np.ndarray:
    """One (2, 3) affine matrix; see warp_matrices."""
    return warp_matrices(center, scale_hw, output_size_hw, [rot], inv)[0]


def crop_people(image_bgr: np.ndarray, boxes_xywh, input_size: tuple[int, int], padding: float = 1.25,
                rots=None, out: np.ndarray | None = None) -> Crops:
    """Cut one model-sized crop per box (cv2.warpAffine, INTER_LINEAR, black outside the image).

    `out`: a uint8 [M >= N, h, w, 3] buffer to warp into (a stream reuses it frame after frame); the crops are then
    its first N rows.
    """
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        shape = getattr(image_bgr, "shape", None)
        raise EdgePoseError(f"image must be an HxWx3 BGR array, got {type(image_bgr).__name__} shape {shape}")
    if image_bgr.dtype != np.uint8:
        raise EdgePoseError(f"image must be uint8, got {image_bgr.dtype}")
    h, w = input_size
    centers, scales = box_to_center_scale(boxes_xywh, input_size, padding)
    n = len(centers)
    rot = np.zeros(n, np.float32) if rots is None else np.broadcast_to(np.asarray(rots, np.float32), (n,)).copy()
    mats = warp_matrices(centers, scales, input_size, rot)
    images = np.empty((n, h, w, 3), np.uint8) if out is None else _rows(out, n, (h, w, 3), np.uint8, "crop")
    for i in range(n):
        cv2.warpAffine(image_bgr, mats[i], (w, h), dst=images[i], flags=cv2.INTER_LINEAR)
    return Crops(images, centers, scales, rot)


def _rows(buffer: np.ndarray, n: int, shape: tuple, dtype, what: str) -> np.ndarray:
    """The first n rows of a preallocated buffer, or one line saying why it cannot hold them."""
    if (not isinstance(buffer, np.ndarray) or buffer.dtype != dtype or buffer.shape[1:] != tuple(shape)
            or len(buffer) < n or not buffer.flags.c_contiguous):
        want = ", ".join(map(str, shape))
        raise EdgePoseError(f"{what} buffer must be C-contiguous {np.dtype(dtype)} [>= {n}, {want}], got "
                            f"{getattr(buffer, 'dtype', type(buffer).__name__)} {getattr(buffer, 'shape', None)}")
    return buffer[:n]


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero, as the TFLite QUANTIZE kernel does (np.rint rounds half to even)."""
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def input_tables(input_spec: InputSpec) -> np.ndarray:
    """[3, 256] lookup tables, one per model channel (in the model's colour order): uint8 value -> input value.

    Inputs are uint8, so normalisation and quantisation reduce to 768 precomputed values; the arithmetic is the
    same float32 (x - mean) / std, then q = round(x / scale + zero_point) clipped to the dtype's range.
    """
    dtype = input_spec.dtype
    if dtype not in FLOAT_DTYPES and dtype not in INT_RANGES:
        raise EdgePoseError(f"input {input_spec.name!r}: unsupported dtype {dtype!r}")
    v = np.arange(256, dtype=np.float32)[None, :]
    mean = np.asarray(input_spec.mean, np.float32).reshape(3, 1)
    std = np.asarray(input_spec.std, np.float32).reshape(3, 1)
    identity = bool(np.all(mean == 0) and np.all(std == 1))
    table = np.repeat(v, 3, axis=0) if identity else (v - mean) / std
    q = input_spec.quantization
    if dtype in INT_RANGES:
        if q is None and not identity:
            raise EdgePoseError(f"input {input_spec.name!r}: {dtype} input with mean/std needs quantization")
        if q is not None:
            table = _round_half_away(table / np.float32(q.scale) + np.float32(q.zero_point))
        table = np.clip(table, *INT_RANGES[dtype])
    return table.astype(dtype)


def to_model_input(crops_bgr_uint8: np.ndarray, input_spec: InputSpec, out: np.ndarray | None = None,
                   tables: np.ndarray | None = None) -> np.ndarray:
    """uint8 BGR crops [N, h, w, 3] -> exactly the model's input tensor.

    Colour order, then (x - mean) / std in 0..255 units, then q = round(x / scale + zero_point) clipped to the
    dtype's range for quantised integer inputs, then layout and dtype. Done with one cv2.LUT per channel plane,
    which also performs the NHWC -> NCHW move (a float transpose is the slow part otherwise).

    `out`: a buffer of the model's layout and dtype with at least N rows, written and returned as its first N rows
    (same values as without it); `tables`: input_tables(input_spec), computed once by a caller that converts often.
    """
    x = np.asarray(crops_bgr_uint8)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise EdgePoseError(f"crops must be uint8 [N, h, w, 3], got {x.dtype} shape {x.shape}")
    n, h, w, _ = x.shape
    if (h, w) != (input_spec.height, input_spec.width):
        raise EdgePoseError(f"crops are {h}x{w} but input {input_spec.name!r} is "
                            f"{input_spec.height}x{input_spec.width} (h x w)")
    tables = input_tables(input_spec) if tables is None else tables
    source = (2, 1, 0) if input_spec.color == "rgb" else (0, 1, 2)  # BGR channel feeding each model channel
    shape = (3, h, w) if input_spec.layout == "NCHW" else (h, w, 3)
    if out is not None:
        out = _rows(out, n, shape, tables.dtype, "model input")
    if n == 0:
        return np.zeros((0, *shape), tables.dtype) if out is None else out
    if input_spec.layout == "NCHW":
        if out is None:
            out = np.empty((n, 3, h, w), tables.dtype)
        for c, src in enumerate(source):
            plane = np.ascontiguousarray(x[..., src]).reshape(n * h, w)
            out[:, c] = cv2.LUT(plane, tables[c]).reshape(n, h, w)
        return out
    ordered = np.ascontiguousarray(x).reshape(n * h, w, 3)
    if input_spec.color == "rgb":
        ordered = cv2.cvtColor(ordered, cv2.COLOR_BGR2RGB)
    result = cv2.LUT(ordered, np.ascontiguousarray(tables.T[None])).reshape(n, h, w, 3)
    if out is None:
        return result
    out[...] = result
    return out


def crop_to_image(keypoints, centers, scales_hw, input_size: tuple[int, int], rots=None,
                  inverse: np.ndarray | None = None) -> np.ndarray:
    """Keypoints [N, K, 2] (x, y) in input-crop px -> image px, through each crop's inverse affine.

    `inverse`: those matrices, warp_matrices(centers, scales_hw, input_size, rots, inv=True), computed ahead (a
    stream computes them beside the crop, off the inference thread)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    inv = warp_matrices(centers, scales_hw, input_size, rots, inv=True) if inverse is None else inverse
    out = np.einsum("nij,nkj->nki", inv[:, :, :2], kp) + inv[:, None, :, 2]
    return out.astype(np.float32)

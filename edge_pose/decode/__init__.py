"""Heatmaps -> keypoints, vectorised over people and keypoints (mmpose codec semantics).

`decode_heatmaps(heatmaps, method, input_size, blur_kernel, layout)` returns keypoints [N, K, 2] float32 (x, y) in
input-crop pixels and scores [N, K]. The methods (msra, dark, udp), their functions, coordinate scale rules and
flip shifts are the registry's DECODERS. Sizes are (height, width).
"""
from __future__ import annotations

import numpy as np

from edge_pose.decode.flip import flip_heatmaps, fuse_flip
from edge_pose.errors import EdgePoseError
from registry import DECODERS, load

METHODS = tuple(DECODERS)

__all__ = ["METHODS", "decode_heatmaps", "flip_heatmaps", "fuse_flip"]


def decode_heatmaps(heatmaps, method: str = "msra", input_size: tuple[int, int] = (256, 192), blur_kernel: int = 11,
                    layout: str = "NCHW") -> tuple[np.ndarray, np.ndarray]:
    """(N, K, H, W) heatmaps (or (N, H, W, K) with layout="NHWC"; a 3-D array is one person) -> keypoints, scores."""
    hm = np.asarray(heatmaps)
    if layout not in ("NCHW", "NHWC"):
        raise EdgePoseError(f"heatmap layout {layout!r} is not NCHW or NHWC")
    if hm.ndim == 3:
        hm = hm[None]
    if hm.ndim != 4:
        raise EdgePoseError(f"heatmaps must be 4-D ({layout}), got shape {hm.shape}")
    if layout == "NHWC":
        hm = hm.transpose(0, 3, 1, 2)
    n, k, h, w = hm.shape
    if min(n, k) == 0:
        return np.zeros((n, k, 2), np.float32), np.zeros((n, k), np.float32)
    maps = np.ascontiguousarray(hm, dtype=np.float32).reshape(n * k, h, w)
    in_h, in_w = input_size
    entry = DECODERS.get(method)
    if entry is None:
        raise EdgePoseError(f"decode method {method!r} is not one of {', '.join(METHODS)}")
    decode = load(entry.function)
    locs, vals = decode(maps, blur_kernel) if entry.blur else decode(maps)
    if entry.scale == "size-1":  # heatmap and input corners coincide
        scale = np.array([in_w / max(w - 1, 1), in_h / max(h - 1, 1)], np.float32)
    else:
        scale = np.array([in_w / w, in_h / h], np.float32)
    return (locs * scale).reshape(n, k, 2).astype(np.float32), vals.reshape(n, k).astype(np.float32)

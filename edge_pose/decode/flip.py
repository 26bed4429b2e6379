"""Flip-test fusion: bring the heatmaps of a horizontally flipped crop back to the original's frame.

As mmpose's flip_heatmaps(flip_mode='heatmap'): mirror along x, swap left/right keypoints, and (shift=True) move
everything one pixel right, which aligns the mirrored maps with the unflipped ones for MSRA-style encodings.
"""
from __future__ import annotations

import numpy as np

from edge_pose.errors import EdgePoseError


def flip_heatmaps(heatmaps: np.ndarray, flip_indices, shift: bool = True, layout: str = "NCHW") -> np.ndarray:
    """Heatmaps of flipped crops (N, K, H, W) (or NHWC with layout) -> heatmaps in the unflipped frame, same layout."""
    hm = np.asarray(heatmaps)
    if layout == "NHWC":
        return flip_heatmaps(hm.transpose(0, 3, 1, 2), flip_indices, shift).transpose(0, 2, 3, 1)
    idx = np.asarray(flip_indices, dtype=np.int64)
    if hm.ndim != 4 or len(idx) != hm.shape[1]:
        raise EdgePoseError(f"flip_heatmaps: heatmaps {hm.shape} do not match {len(idx)} flip indices")
    out = hm[:, idx, :, ::-1]
    if shift:
        out = np.concatenate([out[..., :1], out[..., :-1]], axis=-1)
    return np.ascontiguousarray(out)


def fuse_flip(heatmaps: np.ndarray, flipped_heatmaps: np.ndarray, flip_indices, shift: bool = True,
              layout: str = "NCHW") -> np.ndarray:
    """Average of the heatmaps and the flipped crops' heatmaps brought back (mmpose's flip test)."""
    back = flip_heatmaps(flipped_heatmaps, flip_indices, shift, layout)
    return (np.asarray(heatmaps, np.float32) + back.astype(np.float32)) * np.float32(0.5)

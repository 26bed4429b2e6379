"""MSRA decode: argmax, then a quarter-pixel step towards the higher neighbour (mmpose MSRAHeatmap, plain)."""
from __future__ import annotations

import numpy as np

from edge_pose.decode.common import heatmap_maximum, sample


def refine_quarter(maps: np.ndarray, locs: np.ndarray) -> np.ndarray:
    """Shift each (x, y) by 0.25 px towards the larger neighbour along x and y; equal neighbours leave it.

    Bounds follow mmpose's refine_keypoints exactly (x needs 1 < x < W-1, y needs 1 < y < H-1).
    """
    _, h, w = maps.shape
    x, y = locs[:, 0].astype(np.int64), locs[:, 1].astype(np.int64)
    v = sample(maps, x, y, [(1, 0), (-1, 0), (0, 1), (0, -1)])
    ok_x = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    ok_y = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    dx = np.where(ok_x, v[:, 0] - v[:, 1], 0)
    dy = np.where(ok_y, v[:, 2] - v[:, 3], 0)
    return locs + np.sign(np.stack([dx, dy], axis=1)).astype(np.float32) * np.float32(0.25)


def decode_msra(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> locations (M, 2) in heatmap px and scores (M,)."""
    locs, vals = heatmap_maximum(maps)
    return refine_quarter(maps, locs), vals

"""MSRA decode: argmax, then a quarter-pixel step towards the higher neighbour (mmpose MSRAHeatmap, plain)."""
from __future__ import annotations

import numpy as np

from edge_pose.decode.common import heatmap_maximum, sample

# right, below, left, above: the first two minus the last two are the x and y differences
_NEIGHBOURS = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], dtype=np.int64)


def refine_quarter(maps: np.ndarray, locs: np.ndarray) -> np.ndarray:
    """Shift each (x, y) by 0.25 px towards the larger neighbour along x and y; equal neighbours leave it.

    Bounds follow mmpose's refine_keypoints exactly (x needs 1 < x < W-1, y needs 1 < y < H-1).
    """
    _, h, w = maps.shape
    xy = locs.astype(np.int64)
    x, y = xy[:, 0], xy[:, 1]
    v = sample(maps, x, y, _NEIGHBOURS)
    diff = v[:, :2] - v[:, 2:]
    inside = (xy > 0) & (xy < (w, h))
    ok = inside[:, ::-1] & (xy > 1) & (xy < (w - 1, h - 1))
    return locs + np.sign(diff * ok).astype(np.float32) * np.float32(0.25)


def decode_msra(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> locations (M, 2) in heatmap px and scores (M,)."""
    locs, vals = heatmap_maximum(maps)
    return refine_quarter(maps, locs), vals

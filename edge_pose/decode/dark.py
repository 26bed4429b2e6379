"""DARK (distribution-aware) decode: a Newton step on the log of the blurred heatmap (mmpose MSRAHeatmap unbiased).

The log is taken only at the 13 sampled neighbours of each maximum, and the 2x2 Hessian is inverted in closed
form for all keypoints at once.
"""
from __future__ import annotations

import numpy as np

from edge_pose.decode.common import heatmap_maximum, modulated_samples

# (dx, dy) neighbourhood used by the finite differences
_NEIGHBOURS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (-2, 0), (0, 2), (0, -2),
               (1, 1), (1, -1), (-1, 1), (-1, -1)]


def refine_dark(maps: np.ndarray, locs: np.ndarray, kernel: int) -> np.ndarray:
    """Sub-pixel offset -H^-1 g of log(blur(map)) at each maximum away from the border (2 px margin)."""
    _, h, w = maps.shape
    x, y = locs[:, 0].astype(np.int64), locs[:, 1].astype(np.int64)
    with np.errstate(invalid="ignore"):
        values = np.maximum(modulated_samples(maps, kernel, x, y, _NEIGHBOURS), np.float32(1e-10))
    c, xp, xm, yp, ym, xp2, xm2, yp2, ym2, pp, pm, mp, mm = np.log(values).astype(np.float64).T
    dx, dy = 0.5 * (xp - xm), 0.5 * (yp - ym)
    dxx = 0.25 * (xp2 - 2 * c + xm2)
    dyy = 0.25 * (yp2 - 2 * c + ym2)
    dxy = 0.25 * (pp - pm - mp + mm)
    det = dxx * dyy - dxy ** 2
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det != 0) & np.isfinite(det)
    with np.errstate(divide="ignore", invalid="ignore"):
        off_x = -(dyy * dx - dxy * dy) / det
        off_y = -(dxx * dy - dxy * dx) / det
    offset = np.where(ok[:, None], np.stack([off_x, off_y], axis=1), 0.0)
    return (locs + offset).astype(np.float32)


def decode_dark(maps: np.ndarray, kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> locations (M, 2) in heatmap px and scores (M,)."""
    locs, vals = heatmap_maximum(maps)
    return refine_dark(maps, locs, kernel), vals

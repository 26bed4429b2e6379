"""UDP decode: DARK-style Newton step with UDP's differences on the edge-padded log map (mmpose UDPHeatmap).

UDP measures heatmap px in units of (size - 1), so the caller scales by input / (heatmap - 1). Sampling clamps
to the border, which is exactly mmpose's one-pixel edge padding, and the log is taken only at the samples.
Where mmpose indexes outside the map (maps whose maximum is <= 0 sit at (-1, -1)) and returns NaN, this returns
the unrefined (-1, -1) location: finite, with the map's score (<= 0).
"""
from __future__ import annotations

import numpy as np

from edge_pose.decode.common import heatmap_maximum, modulated_samples

_NEIGHBOURS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1)]
_EPS = float(np.finfo(np.float32).eps)


def refine_udp(maps: np.ndarray, locs: np.ndarray, kernel: int) -> np.ndarray:
    valid = locs[:, 0] >= 0
    x, y = locs[:, 0].astype(np.int64), locs[:, 1].astype(np.int64)
    with np.errstate(invalid="ignore"):
        values = np.clip(modulated_samples(maps, kernel, x, y, _NEIGHBOURS), np.float32(1e-3), np.float32(50.0))
    c, xp, xm, yp, ym, pp, mm = np.log(values).astype(np.float64).T
    dx, dy = 0.5 * (xp - xm), 0.5 * (yp - ym)
    dxx = xp - 2 * c + xm + _EPS
    dyy = yp - 2 * c + ym + _EPS
    dxy = 0.5 * (pp - xp - yp + 2 * c - xm - ym + mm)
    det = dxx * dyy - dxy ** 2
    ok = valid & (det != 0) & np.isfinite(det)
    with np.errstate(divide="ignore", invalid="ignore"):
        off_x = (dyy * dx - dxy * dy) / det
        off_y = (dxx * dy - dxy * dx) / det
    offset = np.where(ok[:, None], np.stack([off_x, off_y], axis=1), 0.0)
    return (locs - offset).astype(np.float32)


def decode_udp(maps: np.ndarray, kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> locations (M, 2) in heatmap px (UDP units) and scores (M,)."""
    locs, vals = heatmap_maximum(maps)
    return refine_udp(maps, locs, kernel), vals

"""DARK (distribution-aware) decode: a Newton step on the log of the blurred heatmap (mmpose MSRAHeatmap unbiased).

Only the 13 points each step reads are blurred (decode.window), the log is taken there, the derivatives are one
matrix product, and the 2x2 Hessian is inverted in closed form for all keypoints at once.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from edge_pose.decode.common import heatmap_argmax, locations
from edge_pose.decode.window import refine

# (dx, dy) neighbourhood used by the finite differences
_NEIGHBOURS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (-2, 0), (0, 2), (0, -2),
               (1, 1), (1, -1), (-1, 1), (-1, -1))
# columns: dx, dy, dxx, dyy, dxy as combinations of the log samples (mmpose's central differences)
_DIFF = np.zeros((13, 5))
_DIFF[[1, 2], 0] = 0.5, -0.5
_DIFF[[3, 4], 1] = 0.5, -0.5
_DIFF[[5, 0, 6], 2] = 0.25, -0.5, 0.25
_DIFF[[7, 0, 8], 3] = 0.25, -0.5, 0.25
_DIFF[[9, 10, 11, 12], 4] = 0.25, -0.25, -0.25, 0.25
_FLOOR = 1e-10  # mmpose's floor before the log


def _newton(logs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-H^-1 g per row of log samples, and its px error per unit error of one log sample.

    One log error moves each of g, dxx, dyy, dxy by at most that much, so the step moves by at most
    |H^-1|_inf (1 + 2 |step|_inf) <= (|dxx| + |dyy| + 2 |dxy|) / |det| (1 + 2 |step|_1) times it.
    """
    dx, dy, dxx, dyy, dxy = (logs @ _DIFF).T
    inv_det = 1.0 / (dxx * dyy - dxy * dxy)
    offset = np.empty((len(logs), 2))  # (stack and reductions cost more than the arithmetic at this size)
    ox = offset[:, 0] = (dxy * dy - dyy * dx) * inv_det
    oy = offset[:, 1] = (dxy * dx - dxx * dy) * inv_det
    return offset, (np.abs(dxx) + np.abs(dyy) + 2 * np.abs(dxy)) * np.abs(inv_det) * (2 * (np.abs(ox) + np.abs(oy)) + 1)


def _newton_mmpose(logs: np.ndarray) -> np.ndarray:
    """-H^-1 g as mmpose evaluates it (float32 differences in its order, np.linalg.inv in float32), for the few maps
    whose step hangs on rounding: flat maps, near-singular Hessians."""
    c, xp, xm, yp, ym, xp2, xm2, yp2, ym2, pp, pm, mp, mm = logs.astype(np.float32).T
    half, quarter = np.float32(0.5), np.float32(0.25)
    g = np.stack([half * (xp - xm), half * (yp - ym)], axis=1)[:, :, None]
    dxx = quarter * (xp2 - 2 * c + xm2)
    dyy = quarter * (yp2 - 2 * c + ym2)
    dxy = quarter * (pp - pm - mp + mm)
    hessian = np.stack([dxx, dxy, dxy, dyy], axis=1).reshape(-1, 2, 2)
    offset = np.zeros((len(logs), 2))
    ok = (dxx * dyy - dxy ** 2 != 0) & np.isfinite(hessian).all(axis=(1, 2))
    try:
        offset[ok] = -(np.linalg.inv(hessian[ok]) @ g[ok])[:, :, 0]
    except np.linalg.LinAlgError:  # float32 det != 0 yet LAPACK finds it singular: mmpose would stop here
        offset[ok] = np.nan
    return offset


@lru_cache(maxsize=16)
def _refinable(h: int, w: int) -> np.ndarray:
    """Flat positions mmpose refines: 1 < x < W-2 and 1 < y < H-2 (all 13 samples inside the map)."""
    ys, xs = np.divmod(np.arange(h * w), w)
    return (xs > 1) & (xs < w - 2) & (ys > 1) & (ys < h - 2)


def refine_dark(maps: np.ndarray, locs: np.ndarray, kernel: int) -> np.ndarray:
    """Sub-pixel offset -H^-1 g of log(blur(map)) at each maximum away from the border (2 px margin)."""
    m, h, w = maps.shape
    xy = locs.astype(np.int64)
    x, y = xy[:, 0], xy[:, 1]
    active = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)
    idx = np.where(active, y * w + x, 0)
    peak = maps.reshape(m, -1).max(axis=1)
    offset = refine(maps, idx, peak, active, kernel, _NEIGHBOURS, _FLOOR, np.inf, _newton, _newton_mmpose,
                    clamped=False)
    return (locs + offset).astype(np.float32)


def decode_dark(maps: np.ndarray, kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> locations (M, 2) in heatmap px and scores (M,)."""
    _, h, w = maps.shape
    idx, vals = heatmap_argmax(maps)
    # an interior argmax needs a positive maximum: mmpose puts non-positive maps at (-1, -1), never refined
    active = _refinable(h, w)[idx] & (vals > 0)
    offset = refine(maps, idx, vals, active, kernel, _NEIGHBOURS, _FLOOR, np.inf, _newton, _newton_mmpose,
                    clamped=False)
    return (locations(idx, vals, h, w) + offset).astype(np.float32), vals

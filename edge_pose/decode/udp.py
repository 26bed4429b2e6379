"""UDP decode: DARK-style Newton step with UDP's differences on the edge-padded log map (mmpose UDPHeatmap).

UDP measures heatmap px in units of (size - 1), so the caller scales by input / (heatmap - 1). mmpose pads the
log map by one edge pixel; a sample there is the border pixel, so the 3x3 blurred neighbourhood (decode.window) is
read at positions clamped into the map. Where mmpose indexes outside the map (maps whose maximum is <= 0 sit at
(-1, -1)) and returns NaN, this returns the unrefined (-1, -1) location: finite, with the map's score (<= 0).
"""
from __future__ import annotations

import numpy as np

from edge_pose.decode.common import heatmap_argmax, locations
from edge_pose.decode.window import refine

_NEIGHBOURS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1))
_EPS = float(np.finfo(np.float32).eps)
# columns: dx, dy, dxx, dyy, dxy as combinations of the log samples (mmpose's UDP differences)
_DIFF = np.zeros((7, 5))
_DIFF[[1, 2], 0] = 0.5, -0.5
_DIFF[[3, 4], 1] = 0.5, -0.5
_DIFF[[1, 0, 2], 2] = 1.0, -2.0, 1.0
_DIFF[[3, 0, 4], 3] = 1.0, -2.0, 1.0
_DIFF[[5, 1, 3, 0, 2, 4, 6], 4] = 0.5, -0.5, -0.5, 1.0, -0.5, -0.5, 0.5
_LO, _HI = 1e-3, 50.0  # mmpose's clip before the log


def _newton(logs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H + eps I)^-1 g per row of log samples, and its px error per unit error of one log sample.

    One log error moves g by at most that much and dxx, dyy, dxy by at most 4 times it, so the step moves by at
    most |H^-1|_inf (1 + 8 |step|_inf) <= (|dxx| + |dyy| + 2 |dxy|) / |det| (1 + 8 |step|_1) times it.
    """
    dx, dy, dxx, dyy, dxy = (logs @ _DIFF).T
    dxx += _EPS
    dyy += _EPS
    inv_det = 1.0 / (dxx * dyy - dxy * dxy)
    offset = np.empty((len(logs), 2))  # (stack and reductions cost more than the arithmetic at this size)
    ox = offset[:, 0] = (dyy * dx - dxy * dy) * inv_det
    oy = offset[:, 1] = (dxx * dy - dxy * dx) * inv_det
    return offset, (np.abs(dxx) + np.abs(dyy) + 2 * np.abs(dxy)) * np.abs(inv_det) * (8 * (np.abs(ox) + np.abs(oy)) + 1)


def _newton_mmpose(logs: np.ndarray) -> np.ndarray:
    """(H + eps I)^-1 g as mmpose evaluates it (float32 differences in its order; its eps term is float64, which
    makes the inverse float64), for the few maps whose step hangs on rounding."""
    c, xp, xm, yp, ym, pp, mm = logs.astype(np.float32).T
    half = np.float32(0.5)
    g = np.stack([half * (xp - xm), half * (yp - ym)], axis=1)[:, :, None]
    dxx = xp - 2 * c + xm
    dyy = yp - 2 * c + ym
    dxy = half * (pp - xp - yp + c + c - xm - ym + mm)
    hessian = np.stack([dxx, dxy, dxy, dyy], axis=1).reshape(-1, 2, 2) + _EPS * np.eye(2)
    offset = np.full((len(logs), 2), np.nan)
    ok = np.isfinite(hessian).all(axis=(1, 2))
    try:
        offset[ok] = (np.linalg.inv(hessian[ok]) @ g[ok])[:, :, 0]
    except np.linalg.LinAlgError:  # singular even with eps: mmpose would stop here
        pass
    return offset


def refine_udp(maps: np.ndarray, locs: np.ndarray, kernel: int) -> np.ndarray:
    m, h, w = maps.shape
    xy = locs.astype(np.int64)
    active = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    idx = np.where(active, xy[:, 1] * w + xy[:, 0], 0)
    peak = maps.reshape(m, -1).max(axis=1)
    offset = refine(maps, idx, peak, active, kernel, _NEIGHBOURS, _LO, _HI, _newton, _newton_mmpose,
                    clamped=True)
    return (locs - offset).astype(np.float32)


def decode_udp(maps: np.ndarray, kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> locations (M, 2) in heatmap px (UDP units) and scores (M,)."""
    _, h, w = maps.shape
    idx, vals = heatmap_argmax(maps)
    offset = refine(maps, idx, vals, vals > 0, kernel, _NEIGHBOURS, _LO, _HI, _newton, _newton_mmpose,
                    clamped=True)
    return (locations(idx, vals, h, w) - offset).astype(np.float32), vals

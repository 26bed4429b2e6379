"""mmpose's heatmap modulation (Gaussian blur, then rescale to the original maximum), evaluated only where sampled.

mmpose blurs every whole map (zero padding of the kernel radius, then cv2.GaussianBlur, whose own border mode never
reaches the kept region) and reads a handful of values next to each maximum. A blurred value depends only on the
kernel-sized square around it, so the (2 reach + 1)^2 grid a decoder reads is a separable linear function of the
(2 R + 1)^2 window around the maximum, R = reach + kernel radius: one gather of every map's window (positions
outside the map read as zero, mmpose's padding) and two small matrix products give every map's grid at once. At
64x48 a window is 1/14 of its map (DARK) and costs 1/45 of the whole-map blur's multiply-adds. The whole-map blur
is kept for the rare maps whose rescale gain cannot be shown irrelevant or whose result hangs on rounding (refine).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

from edge_pose.decode.common import check_kernel, modulate, sample

# OpenBLAS splits a GEMM over threads above 2^18 multiply-adds; on a busy 2-core device waking the second thread
# was measured at ~15 ms instead of ~25 us for one 544x225x13 product, so products stay below that size.
_SINGLE_THREAD_MACS = 1 << 18


class _Plan(NamedTuple):
    reach: int  # how far the samples reach from the maximum
    window: np.ndarray  # (n*n,) flat offsets of the window cells from the maximum, row-major
    inside: np.ndarray  # (H*W, n, n) 1 where a window cell lies inside the map, per position of the maximum
    crosses: np.ndarray  # (H*W,) whether the window leaves the map, per position of the maximum
    band: np.ndarray  # (n, S): band[i, o] weighs window cell i for grid row / column o (cv2's kernel, shifted)
    band_t: np.ndarray
    cells: np.ndarray  # (H*W, len(offsets)) grid cell of each sample clamped into the map, per position
    fixed: np.ndarray  # (len(offsets),) grid cell of each sample where no clamping is needed
    maps_per_product: int  # maps per matrix product below the single-thread size


@lru_cache(maxsize=4)  # ~3 MB each at 64x48
def _plan(h: int, w: int, kernel: int, offsets: tuple) -> _Plan:
    b = (kernel - 1) // 2
    reach = max(max(abs(dx), abs(dy)) for dx, dy in offsets)
    r = reach + b
    n, s = 2 * r + 1, 2 * reach + 1
    span = np.arange(-r, r + 1)
    ys, xs = np.divmod(np.arange(h * w), w)
    in_y = ((ys[:, None] + span) >= 0) & ((ys[:, None] + span) < h)
    in_x = ((xs[:, None] + span) >= 0) & ((xs[:, None] + span) < w)
    # for sigma 0 cv2 derives sigma from the size (and uses fixed tables up to size 7): take its kernel as is
    k = cv2.getGaussianKernel(kernel, 0, ktype=cv2.CV_32F).ravel()
    band = np.zeros((n, s), np.float32)
    for o in range(s):
        band[o:o + kernel, o] = k
    cells = np.stack([(np.clip(ys + dy, 0, h - 1) - ys + reach) * s + np.clip(xs + dx, 0, w - 1) - xs + reach
                      for dx, dy in offsets], axis=1)
    fixed = np.array([(dy + reach) * s + dx + reach for dx, dy in offsets])
    # float32, not bool: gathering 4x the bytes is cheaper than a bool -> float multiply
    inside = (in_y[:, :, None] & in_x[:, None, :]).astype(np.float32)
    return _Plan(reach, (span[:, None] * w + span[None, :]).ravel(), inside, inside.min(axis=(1, 2)) < 1, band,
                 np.ascontiguousarray(band.T), cells, fixed, max(1, _SINGLE_THREAD_MACS // (s * n * n)))


def _windows(maps: np.ndarray, idx: np.ndarray, window: np.ndarray, n: int) -> np.ndarray:
    """(M, n, n) cells of each map around flat position idx, in the stacked maps' memory (not yet masked).

    A strided view whose element q is the n x n block starting at flat index q makes the gather one fancy index
    (no index arrays). Only the first map's top and the last map's bottom can reach outside the array: there q is
    clamped (the view cannot leave the buffer) and those maps are gathered element-wise instead.
    """
    m, h, w = maps.shape
    flat = maps.reshape(-1)
    start = idx + np.arange(window[0], m * h * w + window[0], h * w)
    last = flat.size - 1 - (window[-1] - window[0])
    if last < 0:  # maps smaller than a window: element-wise only
        return flat.take(start[:, None] - window[0] + window, mode="clip").reshape(m, n, n)
    # numpy checks that every block of this view lies inside flat's buffer
    blocks = np.ndarray((last + 1, n, n), flat.dtype, flat, 0, (flat.itemsize, w * flat.itemsize, flat.itemsize))
    if start[0] >= 0 and start[-1] <= last:  # (start increases with the map index)
        return blocks[start]
    out = blocks[np.minimum(np.maximum(start, 0), last)]
    bad = np.flatnonzero((start < 0) | (start > last))
    out[bad] = flat.take(start[bad, None] - window[0] + window, mode="clip").reshape(-1, n, n)
    return out


def _blurred_grid(maps: np.ndarray, idx: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded Gaussian blur of each (M, H, W) float32 C-contiguous map on the S x S grid around flat position
    idx -> (M, S*S) row-major, and each window's minimum (cells outside the map count as the zero padding).

    Grid cells outside a map hold the blur of the zero-extended map there (the plan's cells clamp them).
    """
    m = len(maps)
    n, s = plan.band.shape
    window = _windows(maps, idx, plan.window, n)
    crossing = np.flatnonzero(plan.crosses[idx])
    if len(crossing):  # cells outside the map (other rows, other maps) read as mmpose's zero padding
        window[crossing] *= plan.inside[idx[crossing]]
    grid = np.empty((m, s * s), np.float32)
    step = plan.maps_per_product
    for i in range(0, m, step):
        part = window[i:i + step].reshape(-1, n)  # rows: (map, window row); columns: window column
        along_x = plan.band_t @ part.T  # (grid column, (map, window row))
        along_y = along_x.reshape(-1, n) @ plan.band  # ((grid column, map), grid row)
        grid[i:i + step] = along_y.reshape(s, -1, s).transpose(1, 2, 0).reshape(-1, s * s)
    return grid, window.reshape(m, -1).min(axis=1)


def blurred_grid(maps: np.ndarray, idx: np.ndarray, kernel: int, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, S, S) [m, y, x] zero-padded blur on the grid of half-size `reach` around flat positions idx, and each
    window's minimum; see _blurred_grid."""
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    m, h, w = maps.shape
    s = 2 * reach + 1
    plan = _plan(h, w, check_kernel(kernel), ((-reach, -reach), (reach, reach)))
    with np.errstate(invalid="ignore", over="ignore"):
        grid, lowest = _blurred_grid(maps, idx, plan)
    return grid.reshape(m, s, s), lowest


def _gain_matters(peak: np.ndarray, lowest: np.ndarray, highest, lo: float, hi: float) -> np.ndarray:
    """Maps whose samples need mmpose's true rescale gain, peak / max(whole blurred map), to be clipped right.

    `lowest` is each map's smallest sample, `highest()` gives the largest. A normalised non-negative kernel cannot
    raise a positive maximum, so once some sample is positive (the blurred maximum is then too), gain >= 1 and
    gain * sample <= peak. Hence when no sample clips at gain 1 and peak <= hi, none clips at the true gain either,
    and the gain is a common factor (an additive constant after the log, which every finite difference cancels);
    when peak < lo every sample clips whatever the gain.
    """
    matters = ~(lowest >= lo)  # NaN compares False: such maps take the exact path
    if hi < np.inf:
        matters |= peak > hi
    if matters.any():
        matters &= ~((peak < lo) & (highest() > 0))
    return matters


# Error model of the windowed samples: the windowed blur and cv2's both round float32 sums, so a log sample may
# differ from mmpose's by about 2^-22 of the window's largest |cell| relative to the sample, and mmpose's float32
# log adds 2^-22 of the log's size. A map whose Newton step could move by more than _TOLERANCE heatmap px under
# that difference (a flat or diffuse map, a near-singular Hessian) is redone as mmpose computes it. Measured on
# hostile, random-weight and trained-model maps the estimate was >= 3.9x the actual difference (so <= 2.6e-4
# heatmap px, 1e-3 px at stride 4; in practice below 1.1e-4 px). 0.7% (DARK) and 5.8% (UDP) of a trained
# SimpleBaseline's maps on coco-mini's detector boxes took the whole-map path.
_ROUNDING = 2.0 ** -22
_TOLERANCE = 1e-3


def refine(maps: np.ndarray, idx: np.ndarray, peak: np.ndarray, active: np.ndarray, kernel: int, offsets: tuple,
           lo: float, hi: float, newton, newton_mmpose, clamped: bool) -> np.ndarray:
    """Newton offsets (M, 2) float64 of mmpose's modulated maps at flat positions idx; zero where not `active`.

    `offsets` are the (dx, dy) sample positions, read clamped into the map if `clamped` (else every active map's
    samples must lie inside it); `lo`, `hi` the clip before the log;
    `newton(logs) -> (offset, sensitivity)` turns (M, len(offsets)) log samples into offsets and their px error
    per unit log error. Samples come from the windowed blur; maps where the rescale gain matters or the result is
    sensitive to rounding take mmpose's path: the whole map blurred by cv2, rescaled, sampled, and
    `newton_mmpose(float32 logs)` repeating mmpose's float32 arithmetic.
    """
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    m, h, w = maps.shape
    plan = _plan(h, w, check_kernel(kernel), offsets)
    # non-finite heatmaps decode to finite keypoints (unrefined): no warnings on the way
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        grid, window_min = _blurred_grid(maps, idx, plan)
        if clamped:
            samples = grid.reshape(-1).take(plan.cells[idx] + np.arange(0, grid.size, grid.shape[1])[:, None])
        else:
            samples = grid[:, plan.fixed]
        lowest = samples.min(axis=1)
        exact = active & _gain_matters(peak, lowest, lambda: samples.max(axis=1), lo, hi)
        np.maximum(samples, np.float32(lo), out=samples)
        if hi < np.inf:
            np.minimum(samples, np.float32(hi), out=samples)
        offset, sensitivity = newton(np.log(samples).astype(np.float64))
        lowest = np.maximum(lowest, lo)  # (above hi only when every sample clips there: no step to misjudge)
        scale = peak - np.minimum(window_min, 0)  # >= the window's largest |cell|
        error = sensitivity * (scale / lowest - np.log(lowest))  # in units of _ROUNDING
        exact |= active & ~(error <= _TOLERANCE / _ROUNDING)
        if exact.any():
            sel = np.flatnonzero(exact)
            blurred, gain = modulate(maps[sel], kernel)
            rows, cols = np.divmod(idx[sel], w)
            values = np.clip(sample(blurred, cols, rows, offsets) * gain[:, None], np.float32(lo), np.float32(hi))
            offset[sel] = newton_mmpose(np.log(values))
        # mmpose skips a singular Hessian; a non-finite one (NaN gain of an empty map) is skipped, not propagated
        offset[~(active & np.isfinite(offset[:, 0] + offset[:, 1]))] = 0.0
    return offset

"""Shared pieces of every heatmap decoder: the argmax, neighbourhood sampling and the modulating blur.

All functions work on a whole batch of maps stacked as (M, H, W) with M = N * K, so a decoder never loops over
people or keypoints in Python.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge_pose.errors import EdgePoseError


def heatmap_maximum(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> locations (M, 2) float32 (x, y) of each map's maximum, and the maxima (M,).

    Ties resolve to the first index in row-major order (numpy's argmax, as mmpose): int8 heatmaps have plateaus.
    Maps whose maximum is <= 0 get location (-1, -1), as in mmpose's get_heatmap_maximum.
    """
    m, h, w = maps.shape
    flat = maps.reshape(m, h * w)
    idx = flat.argmax(axis=1)
    vals = flat[np.arange(m), idx]
    row, col = np.divmod(idx, w)
    locs = np.empty((m, 2), np.float32)
    locs[:, 0] = col
    locs[:, 1] = row
    locs[vals <= 0] = -1
    return locs, vals


def sample(maps: np.ndarray, x: np.ndarray, y: np.ndarray, offsets) -> np.ndarray:
    """Values maps[i, y_i + dy, x_i + dx] for each (dx, dy) in `offsets` -> (M, len(offsets)).

    Positions outside a map are clamped to its border: callers mask those results out (as mmpose's bounds checks
    do), and UDP relies on the clamp being its one-pixel edge padding. `maps` may be a strided view.
    """
    m, h, w = maps.shape
    off = np.asarray(offsets, dtype=np.int64)
    xs = np.minimum(np.maximum(x[:, None] + off[:, 0], 0), w - 1)
    ys = np.minimum(np.maximum(y[:, None] + off[:, 1], 0), h - 1)
    return maps[np.arange(m)[:, None], ys, xs]


def check_kernel(kernel: int) -> int:
    kernel = int(kernel)
    if kernel < 1 or kernel % 2 == 0:
        raise EdgePoseError(f"blur kernel must be a positive odd integer, got {kernel}")
    return kernel


def modulate(maps: np.ndarray, kernel: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blur of every map with zero padding, rescaled to keep each map's maximum (mmpose gaussian_blur).

    Instead of one cv2 call per map, the maps are stacked into one tall image with kernel-radius rows of zeros
    between them and blurred once with a zero border: no map ever sees its neighbour, and the result equals
    mmpose's per-map blur of a zero-padded copy bit for bit. Returns the blurred maps and each map's gain
    (original max / blurred max), applied by the caller only where it samples.
    """
    kernel = check_kernel(kernel)
    m, h, w = maps.shape
    b = (kernel - 1) // 2
    if b == 0:
        return maps.astype(np.float32, copy=False), np.ones(m, np.float32)
    tall = np.zeros((m * (h + b) + b, w), np.float32)
    tall[b:].reshape(m, h + b, w)[:, :h] = maps
    blurred = cv2.GaussianBlur(tall, (kernel, kernel), 0, borderType=cv2.BORDER_CONSTANT)
    blurred = blurred[b:].reshape(m, h + b, w)[:, :h]
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = maps.reshape(m, -1).max(axis=1) / blurred.reshape(m, h * w).max(axis=1)
    return blurred, gain.astype(np.float32)


def modulated_samples(maps: np.ndarray, kernel: int, x: np.ndarray, y: np.ndarray,
                      offsets: list[tuple[int, int]]) -> np.ndarray:
    """sample() of the modulated (blurred, max-preserving) maps, without rescaling whole maps."""
    blurred, gain = modulate(maps, kernel)
    with np.errstate(invalid="ignore"):
        return sample(blurred, x, y, offsets) * gain[:, None]

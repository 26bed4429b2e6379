"""Shared pieces of every heatmap decoder: the argmax, neighbourhood sampling and the modulating blur.

All functions work on a whole batch of maps stacked as (M, H, W) with M = N * K, so a decoder never loops over
people or keypoints in Python.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from edge_pose.errors import EdgePoseError


def heatmap_argmax(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> flat index (M,) of each map's first maximum in row-major order, and the maxima (M,)."""
    m, h, w = maps.shape
    flat = maps.reshape(m, h * w)
    idx = flat.argmax(axis=1)
    return idx, flat[np.arange(m), idx]


@lru_cache(maxsize=16)
def _positions(h: int, w: int) -> np.ndarray:
    ys, xs = np.divmod(np.arange(h * w, dtype=np.float32), w)
    return np.stack([xs, ys], axis=1)


def locations(idx: np.ndarray, vals: np.ndarray, h: int, w: int) -> np.ndarray:
    """Flat indices -> (x, y) float32; maps whose maximum is <= 0 get (-1, -1), as mmpose's get_heatmap_maximum."""
    locs = _positions(h, w)[idx]
    locs[vals <= 0] = -1
    return locs


def heatmap_maximum(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, H, W) -> locations (M, 2) float32 (x, y) of each map's maximum, and the maxima (M,).

    Ties resolve to the first index in row-major order (numpy's argmax, as mmpose): int8 heatmaps have plateaus.
    Maps whose maximum is <= 0 get location (-1, -1), as in mmpose's get_heatmap_maximum.
    """
    idx, vals = heatmap_argmax(maps)
    return locations(idx, vals, *maps.shape[1:]), vals


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

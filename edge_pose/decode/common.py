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
    idx = np.argmax(flat, axis=1)
    vals = np.take_along_axis(flat, idx[:, None], axis=1)[:, 0]
    locs = np.stack([idx % w, idx // w], axis=1).astype(np.float32)
    locs[vals <= 0] = -1
    return locs, vals


def sample(maps: np.ndarray, x: np.ndarray, y: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Values maps[i, y_i + dy, x_i + dx] for each (dx, dy) in `offsets` -> (M, len(offsets)).

    Positions outside a map are clamped to its border: callers mask those results out (as mmpose's bounds checks do).
    """
    m, h, w = maps.shape
    off = np.asarray(offsets, dtype=np.int64)
    xs = np.clip(x[:, None] + off[None, :, 0], 0, w - 1)
    ys = np.clip(y[:, None] + off[None, :, 1], 0, h - 1)
    return np.take_along_axis(maps.reshape(m, h * w), ys * w + xs, axis=1)


def check_kernel(kernel: int) -> int:
    kernel = int(kernel)
    if kernel < 1 or kernel % 2 == 0:
        raise EdgePoseError(f"blur kernel must be a positive odd integer, got {kernel}")
    return kernel


def modulate(maps: np.ndarray, kernel: int) -> np.ndarray:
    """Gaussian blur of every map with zero padding, rescaled to keep each map's maximum (mmpose gaussian_blur).

    Instead of one cv2 call per map, the zero-padded maps are stacked into one tall image and blurred once: the
    pad is exactly the kernel radius, so no map ever sees its neighbour and the result equals the per-map blur
    bit for bit.
    """
    kernel = check_kernel(kernel)
    m, h, w = maps.shape
    b = (kernel - 1) // 2
    if b == 0:
        return maps.astype(np.float32, copy=True)
    padded = np.zeros((m, h + 2 * b, w + 2 * b), np.float32)
    padded[:, b:-b, b:-b] = maps
    tall = cv2.GaussianBlur(padded.reshape(m * (h + 2 * b), w + 2 * b), (kernel, kernel), 0)
    blurred = tall.reshape(padded.shape)[:, b:-b, b:-b]
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = maps.reshape(m, -1).max(axis=1) / blurred.reshape(m, -1).max(axis=1)
    return blurred * gain[:, None, None].astype(np.float32)

"""Skeleton drawing with cv2: what `edge-pose predict` writes so a person can look at the result."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

# BGR; limbs coloured by side so left/right swaps are visible at a glance
LEFT, RIGHT, CENTRE = (255, 128, 0), (0, 128, 255), (0, 220, 0)
BOX = (0, 255, 255)  # yellow: a person box must stand out on grey and colour photos alike


def _side(names: Sequence[str] | None, i: int) -> tuple[int, int, int]:
    if not names or i >= len(names):
        return CENTRE
    name = names[i].lower()
    if name.startswith(("left", "l_")):
        return LEFT
    if name.startswith(("right", "r_")):
        return RIGHT
    return CENTRE


def draw_pose(image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, skeleton: Iterable[tuple[int, int]],
              names: Sequence[str] | None = None, box=None, threshold: float = 0.3) -> np.ndarray:
    """Draw one person in place (and return the image): limbs whose two ends score >= threshold, joints, box."""
    scale = max(1, round(max(image.shape[:2]) / 640))
    pts = np.round(np.asarray(keypoints, np.float64)).astype(np.int64)
    ok = np.asarray(scores) >= threshold
    if box is not None:
        x, y, w, h = (int(round(v)) for v in box[:4])
        cv2.rectangle(image, (x, y), (x + w, y + h), BOX, 2 * scale, cv2.LINE_AA)
    for a, b in skeleton:
        if ok[a] and ok[b]:
            colour = _side(names, a) if _side(names, a) == _side(names, b) else CENTRE
            cv2.line(image, tuple(map(int, pts[a])), tuple(map(int, pts[b])), colour, 2 * scale, cv2.LINE_AA)
    for i in np.flatnonzero(ok):
        cv2.circle(image, tuple(map(int, pts[i])), 2 * scale + 1, _side(names, i), -1, cv2.LINE_AA)
    return image


def draw_people(image: np.ndarray, people, skeleton, names=None, threshold: float = 0.3) -> np.ndarray:
    """Draw every person (objects with .keypoints, .scores, .box) on a copy of the image."""
    out = image.copy()
    for person in people:
        draw_pose(out, person.keypoints, person.scores, skeleton, names, person.box, threshold)
    return out

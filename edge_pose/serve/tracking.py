"""Stable person ids across frames (greedy OKS or IoU matching) and One-Euro smoothing of keypoints.

Greedy matching of the best-scoring pairs first is what top-down pose trackers use at this scale (a handful of people
per frame); the Hungarian algorithm buys nothing here. One-Euro (Casiez et al., CHI 2012) removes jitter when a
person is still and keeps lag low when they move; it runs vectorised over all keypoints of a track.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class OneEuro:
    """One-Euro filter over an array of values (e.g. keypoints (K, 2)) sampled at irregular times."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()


def keypoint_box(keypoints: np.ndarray, scores: np.ndarray, min_score: float = 0.1) -> np.ndarray:
    """Tight (x, y, w, h) box around the confident keypoints (all of them when none is confident)."""
    pts = keypoints[scores > min_score] if np.any(scores > min_score) else keypoints
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return np.array([lo[0], lo[1], max(hi[0] - lo[0], 1.0), max(hi[1] - lo[1], 1.0)], dtype=np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def oks(kp_a: np.ndarray, kp_b: np.ndarray, vis: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """COCO object keypoint similarity of two poses over the keypoints marked visible."""
    if not np.any(vis):
        return 0.0
    d2 = np.sum((kp_a - kp_b) ** 2, axis=1)
    var = (2 * sigmas) ** 2
    e = d2 / (2 * max(area, 1.0) * var)
    return float(np.mean(np.exp(-e[vis])))


@dataclass
class Track:
    id: int
    keypoints: np.ndarray  # (K, 2) last (smoothed) positions
    scores: np.ndarray
    box: np.ndarray  # keypoint box (x, y, w, h)
    last_seen: int  # frame number
    filter: OneEuro | None = None
    hits: int = 1


class Tracker:
    """update(people, t) -> the same people with stable `id`s and (optionally) smoothed keypoints."""

    def __init__(self, match: str = "oks", threshold: float = 0.3, max_missed: int = 10, smoothing: bool = True,
                 min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0, sigmas=None,
                 min_score: float = 0.1):
        self.match, self.threshold, self.max_missed = match, threshold, max_missed
        self.smoothing, self.euro = smoothing, (min_cutoff, beta, d_cutoff)
        self.sigmas = np.asarray(sigmas, dtype=np.float64) if sigmas else None
        self.min_score = min_score
        self.tracks: list[Track] = []
        self._next_id = 1
        self._frame = 0

    def _similarity(self, track: Track, kp: np.ndarray, sc: np.ndarray, box: np.ndarray) -> float:
        if self.match == "oks" and self.sigmas is not None and len(self.sigmas) == len(kp):
            vis = (sc > self.min_score) & (track.scores > self.min_score)
            return oks(track.keypoints, kp, vis, track.box[2] * track.box[3], self.sigmas)
        return iou(track.box, box)

    def update(self, people: list[dict], t: float) -> list[dict]:
        """people: dicts with 'keypoints' (K, 2) and 'scores' (K,) arrays; sets 'id', smooths 'keypoints'."""
        self._frame += 1
        boxes = [keypoint_box(p["keypoints"], p["scores"], self.min_score) for p in people]
        pairs = []
        for ti, track in enumerate(self.tracks):
            for pi, person in enumerate(people):
                sim = self._similarity(track, person["keypoints"], person["scores"], boxes[pi])
                if sim >= self.threshold:
                    pairs.append((sim, ti, pi))
        pairs.sort(key=lambda p: -p[0])
        taken_t, taken_p, assigned = set(), set(), {}
        for sim, ti, pi in pairs:
            if ti not in taken_t and pi not in taken_p:
                taken_t.add(ti)
                taken_p.add(pi)
                assigned[pi] = self.tracks[ti]
        for pi, person in enumerate(people):
            track = assigned.get(pi)
            if track is None:
                track = Track(self._next_id, person["keypoints"], person["scores"], boxes[pi], self._frame,
                              OneEuro(*self.euro) if self.smoothing else None)
                self._next_id += 1
                self.tracks.append(track)
            else:
                track.hits += 1
            kp = np.asarray(person["keypoints"], dtype=np.float64)
            if track.filter is not None:
                kp = track.filter(kp, t)
            track.keypoints, track.scores, track.box, track.last_seen = kp, person["scores"], boxes[pi], self._frame
            person["id"], person["keypoints"] = track.id, kp
        self.tracks = [tr for tr in self.tracks if self._frame - tr.last_seen <= self.max_missed]
        return people

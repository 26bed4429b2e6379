"""What every head's decoder ends with: person scores -> threshold -> top-k -> NMS -> frame pixels -> [M, 5]."""
from __future__ import annotations

import numpy as np

from edge_pose.detect.nms import nms
from edge_pose.detect.preprocess import Geometry
from edge_pose.errors import EdgePoseError


class DetectOutputError(EdgePoseError, ValueError):
    """Model outputs that do not fit the detector's spec; one line naming the output and its shape."""


def empty() -> np.ndarray:
    return np.zeros((0, 5), np.float32)


def top_candidates(scores: np.ndarray, threshold: float, top_k: int) -> np.ndarray:
    """Indices of the scores above threshold, best first (stable on ties), at most top_k of them."""
    idx = np.flatnonzero(scores > np.float32(threshold))
    if len(idx) > top_k:
        # argpartition narrows to the k best in O(A); the stable sort below fixes their order and ties
        part = np.argpartition(-scores[idx], top_k - 1)[:top_k]
        kth = scores[idx][part].min()
        idx = idx[scores[idx] >= kth]  # keep every tie of the k-th score, then cut after the stable sort
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx[:top_k]


def to_frame(boxes_xyxy: np.ndarray, scores: np.ndarray, geom: Geometry, normalised: bool) -> np.ndarray:
    """Kept boxes (input px, or normalised to the input when `normalised`) -> frame px [M, 5] x, y, w, h, score,
    clipped to the frame; boxes left without area are dropped (TF's clip-to-window filter)."""
    b = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    if normalised:
        ih, iw = geom.input_size
        b = b * np.array([iw, ih, iw, ih], np.float32)
    b = geom.to_image(b)
    h, w = geom.image_size
    b = np.clip(b, 0, np.array([w, h, w, h], np.float32))
    wh = b[:, 2:] - b[:, :2]
    ok = (wh > 0).all(axis=1)
    out = np.concatenate([b[:, :2], wh, np.asarray(scores, np.float32).reshape(-1, 1)], axis=1)[ok]
    return out.astype(np.float32)


def select(boxes_xyxy: np.ndarray, scores: np.ndarray, spec, geom: Geometry, normalised: bool = False,
           stats: dict | None = None) -> np.ndarray:
    """Single-class NMS on the person scores of decoded candidate boxes, then frame pixels.

    Person only: greedy NMS run per class is independent across classes, so NMS on the person column alone keeps
    exactly the person boxes a class-aware NMS over all classes would keep.
    """
    idx = top_candidates(scores, spec.score_threshold, spec.pre_nms_top_k)
    if len(idx) == 0:
        return empty()
    keep = idx[nms(boxes_xyxy[idx], scores[idx], spec.iou_threshold, max_out=spec.max_detections, stats=stats)]
    return to_frame(boxes_xyxy[keep], scores[keep], geom, normalised)


def cxcywh_to_xyxy(cx, cy, w, h) -> np.ndarray:
    hw, hh = w / np.float32(2), h / np.float32(2)
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1).astype(np.float32)


def shape_error(head: str, name: str, arr: np.ndarray, want: str) -> DetectOutputError:
    return DetectOutputError(f"{head} decoder: output {name!r} has shape {list(np.shape(arr))}, expected {want}")

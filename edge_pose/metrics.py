"""PCK against COCO ground truth, joints matched by name, so AIC-14 and COCO-17 models are scored alike.

Definition (the one that reproduces the shared models' NOTICE figures, box-centre baselines included): a joint is
correct when its distance to the ground truth is at most `threshold` x the longer side of the person's ground-truth
box; only labelled joints (v > 0) count; each person's share of correct joints is averaged over people (people
without labelled joints are left out).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_pose.keypoints import COCO17_NAMES


def joint_map(names: Sequence[str], gt_names: Sequence[str] = COCO17_NAMES) -> list[tuple[int, int]]:
    """(model index, ground-truth index) for every joint name both sets share."""
    where = {n: i for i, n in enumerate(gt_names)}
    return [(i, where[n]) for i, n in enumerate(names) if n in where]


def person_pck(pred: np.ndarray, gt_keypoints, box_xywh, pairs: list[tuple[int, int]],
               threshold: float = 0.2) -> float | None:
    """Share of this person's labelled shared joints within threshold x max(box w, h); None if none labelled."""
    gt = np.asarray(gt_keypoints, np.float64).reshape(-1, 3)
    model_idx = np.array([p[0] for p in pairs], np.int64)
    gt_idx = np.array([p[1] for p in pairs], np.int64)
    labelled = gt[gt_idx, 2] > 0
    if not labelled.any():
        return None
    dist = np.linalg.norm(np.asarray(pred, np.float64)[model_idx] - gt[gt_idx, :2], axis=1)
    return float(np.mean(dist[labelled] <= threshold * max(float(box_xywh[2]), float(box_xywh[3]))))


def mean_pck(per_person: Sequence[float | None]) -> float:
    scored = [p for p in per_person if p is not None]
    return float(np.mean(scored)) if scored else float("nan")


def box_iou(a_xywh, b_xywh) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x, y, w, h boxes."""
    a = np.asarray(a_xywh, np.float64).reshape(-1, 4)
    b = np.asarray(b_xywh, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    union = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(pred_xywh, gt_xywh, min_iou: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one (pred, gt) pairs by descending IoU, each at least min_iou (ground-truth boxes match 1:1)."""
    iou = box_iou(pred_xywh, gt_xywh)
    pairs, used_p, used_g = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        p, g = divmod(int(flat), iou.shape[1])
        if iou[p, g] < min_iou:
            break
        if p not in used_p and g not in used_g:
            pairs.append((p, g))
            used_p.add(p)
            used_g.add(g)
    return pairs

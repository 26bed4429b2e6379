"""COCO keypoint AP through pycocotools, quietly, for models whose joints are a subset of (or equal to) COCO's.

Joints are matched to the ground truth's category by name; ground-truth joints the model does not predict are
marked unlabelled, so a 14-joint AI Challenger model is scored on the 12 joints it shares with COCO.
"""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np


def _joint_map(model_names: list[str], gt_names: list[str]) -> list[int | None]:
    """For each ground-truth joint, the model joint with the same name (None where the model has none)."""
    index = {n: i for i, n in enumerate(model_names)}
    return [index.get(n) for n in gt_names]


def shared_joints(model_names: list[str], coco_gt: dict) -> int:
    gt_names = coco_gt["categories"][0].get("keypoints", [])
    return sum(m is not None for m in _joint_map(model_names, gt_names))


# mmpose's CocoMetric rescoring: a person's score is its box score times the mean of its keypoint scores above this.
KEYPOINT_SCORE_THR = 0.2


def instance_scores(scores, box_scores=None, thr: float = KEYPOINT_SCORE_THR) -> np.ndarray:
    """Per-person ranking score as mmpose computes it for COCO evaluation (0 when no keypoint is above thr)."""
    sc = np.asarray(scores, dtype=np.float64)
    valid = sc > thr
    mean = np.where(valid.any(1), (sc * valid).sum(1) / np.maximum(valid.sum(1), 1), 0.0)
    return mean * (np.ones(len(sc)) if box_scores is None else np.asarray(box_scores, dtype=np.float64))


def keypoint_ap(coco_gt: dict, image_ids, keypoints, scores, model_names: list[str],
                ann_ids=None, box_scores=None) -> dict[str, float]:
    """AP, AP50, AP75 and AR (0..100) of image-space predictions [N, K, 2] with scores [N, K].

    People are ranked as mmpose ranks them (instance_scores), so the figure is comparable with mmpose's COCO AP.

    Only the images in `image_ids` count; with `ann_ids`, only those ground-truth people (so an evaluation split of
    a dataset is not charged for the people it left out).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_names = coco_gt["categories"][0].get("keypoints", [])
    jmap = _joint_map(model_names, gt_names)
    if not any(m is not None for m in jmap):
        raise ValueError("the model shares no joint names with the ground truth")
    missing = [j for j, m in enumerate(jmap) if m is None]
    keep_imgs = set(image_ids)
    keep_anns = None if ann_ids is None else {a for a in ann_ids if a is not None}
    data = copy.deepcopy({k: v for k, v in coco_gt.items() if k in ("images", "annotations", "categories")})
    data["images"] = [im for im in data["images"] if im["id"] in keep_imgs]
    anns = []
    for a in data["annotations"]:
        if a["image_id"] not in keep_imgs or (keep_anns is not None and a["id"] not in keep_anns):
            continue
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        kp[missing] = 0.0
        a["keypoints"] = kp.ravel().tolist()
        a["num_keypoints"] = int((kp[:, 2] > 0).sum())
        anns.append(a)
    data["annotations"] = anns
    results = []
    used = [m for m in jmap if m is not None]
    ranks = instance_scores(np.asarray(scores)[:, used], box_scores)
    for i, image_id in enumerate(image_ids):
        out = np.zeros((len(gt_names), 3))
        for j, m in enumerate(jmap):
            if m is not None:
                out[j] = (keypoints[i][m][0], keypoints[i][m][1], scores[i][m])
        results.append({"image_id": image_id, "category_id": data["categories"][0]["id"],
                        "keypoints": out.ravel().tolist(), "score": float(ranks[i])})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.imgIds = sorted(keep_imgs)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {"AP": 100 * float(s[0]), "AP50": 100 * float(s[1]), "AP75": 100 * float(s[2]), "AR": 100 * float(s[5])}

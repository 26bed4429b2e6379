"""Fidelity of a person detector: COCO box AP / recall against ground truth, or agreement with a source model.

With ground truth (a COCO file with person annotations): pycocotools `bbox` evaluation restricted to the person
category and to the images that were run: AP (IoU 0.5:0.95), AP at IoU 0.5, and recall at IoU 0.5 (up to 100
detections per image). Without ground truth: how well a converted detector's boxes agree with its source's, as the
mean over the source's boxes of the best IoU with any converted box, and the share of source boxes matched at
IoU >= 0.5.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from edge_pose.boxes import BoxError

Detections = Mapping[int, np.ndarray]  # image id -> float32 [M, 5] x, y, w, h, score (image px)


def load_gt(coco_gt) -> dict:
    if isinstance(coco_gt, Mapping):
        return dict(coco_gt)
    path = Path(coco_gt)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BoxError(f"{path}: cannot read a COCO ground-truth file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise BoxError(f"{path}: not a COCO ground-truth file (needs images, annotations, categories)")
    return data


def person_category(gt: dict) -> int:
    ids = [c["id"] for c in gt["categories"] if c.get("name") == "person"]
    if not ids:
        raise BoxError("ground truth has no 'person' category")
    return int(ids[0])


def run_on_images(detect: Callable[[np.ndarray], np.ndarray], gt: dict, image_dir) -> dict[int, np.ndarray]:
    """detect(image_bgr) on every ground-truth image found in image_dir: {image id: boxes}."""
    import cv2

    out = {}
    for im in gt["images"]:
        path = Path(image_dir) / Path(im["file_name"]).name
        img = cv2.imread(str(path))
        if img is None:
            raise BoxError(f"{path}: missing or not an image (listed in the ground truth)")
        out[int(im["id"])] = np.asarray(detect(img), np.float32).reshape(-1, 5)
    return out


def person_box_ap(coco_gt, detections: Detections) -> dict[str, float]:
    """AP, AP50, recall50 (0..100) of person boxes on the images in `detections`, via pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = load_gt(coco_gt)
    cat = person_category(gt)
    ids = sorted(int(i) for i in detections)
    known = {int(im["id"]) for im in gt["images"]}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise BoxError(f"detections for image id(s) {unknown[:5]} not in the ground truth")
    data = {"images": [im for im in gt["images"] if int(im["id"]) in ids],
            "annotations": [a for a in gt["annotations"] if int(a["image_id"]) in ids and a["category_id"] == cat],
            "categories": [c for c in gt["categories"] if c["id"] == cat]}
    results = [{"image_id": i, "category_id": cat, "bbox": [float(v) for v in b[:4]], "score": float(b[4])}
               for i in ids for b in np.asarray(detections[i], np.float32).reshape(-1, 5)]
    people = sum(not a.get("iscrowd", 0) for a in data["annotations"])
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "recall50": 0.0, "images": len(ids), "people": people, "detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, "bbox")
        ev.params.imgIds = ids
        ev.params.catIds = [cat]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    recall = ev.eval["recall"][t50, 0, 0, -1]  # IoU 0.5, person, all areas, 100 detections
    return {"AP": 100 * float(ev.stats[0]), "AP50": 100 * float(ev.stats[1]),
            "recall50": 100 * float(max(recall, 0.0)), "images": len(ids), "people": people,
            "detections": len(results)}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of x, y, w, h boxes."""
    ax1, ay1, ax2, ay2 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(ax1[:, None], bx1[None]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(ay1[:, None], by1[None]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_agreement(reference: Detections, candidate: Detections, min_score: float = 0.3,
                  candidate_min_score: float | None = None) -> dict[str, float]:
    """How well `candidate` reproduces `reference` (reference boxes above min_score, candidate boxes above
    candidate_min_score, default the same): mean best IoU per reference box, the share of reference boxes matched
    at IoU >= 0.5, and the box counts (an extra candidate box is not a miss, so the counts are reported beside)."""
    cand_min = min_score if candidate_min_score is None else candidate_min_score
    best, ref_n, cand_n = [], 0, 0
    for i in sorted(reference):
        r = np.asarray(reference[i], np.float64).reshape(-1, 5)
        c = np.asarray(candidate.get(i, np.zeros((0, 5))), np.float64).reshape(-1, 5)
        r, c = r[r[:, 4] >= min_score], c[c[:, 4] >= cand_min]
        ref_n, cand_n = ref_n + len(r), cand_n + len(c)
        if len(r):
            best.extend(_iou(r, c).max(axis=1) if len(c) else np.zeros(len(r)))
    best = np.asarray(best)
    return {"mean_best_iou": float(best.mean()) if len(best) else 1.0,
            "matched_fraction": float((best >= 0.5).mean()) if len(best) else 1.0,
            "reference_boxes": ref_n, "candidate_boxes": cand_n, "min_score": min_score,
            "candidate_min_score": cand_min}

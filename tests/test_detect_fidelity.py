"""Detector fidelity figures: pycocotools person box AP / recall on coco-mini's ground truth, and box agreement."""
import json

import numpy as np
import pytest

from calibration.detect_fidelity import box_agreement, person_box_ap
from edge_pose.boxes import BoxError
from shared import coco_mini


@pytest.fixture(scope="module")
def gt():
    return json.loads((coco_mini() / "test_coco.json").read_text())


def gt_boxes(gt, drop_every=0, shift=0.0):
    out = {im["id"]: [] for im in gt["images"]}
    for k, a in enumerate(a for a in gt["annotations"] if a["category_id"] == 1):
        if drop_every and k % drop_every == 0:
            continue
        x, y, w, h = a["bbox"]
        out[a["image_id"]].append([x + shift * w, y, w, h, 0.9])
    return {i: np.asarray(v, np.float32).reshape(-1, 5) for i, v in out.items()}


def test_ground_truth_as_detections_is_perfect(gt):
    m = person_box_ap(gt, gt_boxes(gt))
    assert m["people"] == 14 and m["images"] == 4
    assert m["AP"] == pytest.approx(100) and m["AP50"] == pytest.approx(100) and m["recall50"] == pytest.approx(100)


def test_missing_and_shifted_boxes_cost_recall_and_ap(gt):
    half = person_box_ap(gt, gt_boxes(gt, drop_every=2))
    assert half["recall50"] == pytest.approx(100 * 7 / 14)
    shifted = person_box_ap(gt, gt_boxes(gt, shift=0.4))  # IoU 0.6/1.4 = 0.43: no match at 0.5
    assert shifted["recall50"] == 0 and shifted["AP50"] == 0
    slight = person_box_ap(gt, gt_boxes(gt, shift=0.1))  # IoU 0.82: found at 0.5, not at 0.85+
    assert slight["recall50"] == pytest.approx(100) and 40 < slight["AP"] < 100
    assert person_box_ap(gt, {785: np.zeros((0, 5))})["AP"] == 0
    with pytest.raises(BoxError, match="not in the ground truth"):
        person_box_ap(gt, {12345: np.zeros((0, 5))})


def test_box_agreement(gt):
    ref = gt_boxes(gt)
    same = box_agreement(ref, ref)
    assert same["mean_best_iou"] == pytest.approx(1.0) and same["matched_fraction"] == 1.0
    moved = box_agreement(ref, gt_boxes(gt, shift=0.1))
    assert moved["mean_best_iou"] == pytest.approx(0.9 / 1.1, abs=1e-3) and moved["matched_fraction"] == 1.0
    fewer = box_agreement(ref, gt_boxes(gt, drop_every=2))
    assert fewer["matched_fraction"] == pytest.approx(0.5) and fewer["candidate_boxes"] == 7
    low = {i: np.concatenate([b[:, :4], np.full((len(b), 1), 0.1)], 1) for i, b in ref.items()}
    assert box_agreement(ref, low, min_score=0.3)["matched_fraction"] == 0  # below min_score: not a match

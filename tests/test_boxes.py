"""Person box sources (whole frame, COCO files, HOG) and skeleton drawing."""
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from shared import coco_mini

from edge_pose.boxes import BoxError, CocoBoxes, HogPeople, WholeFrame, box_source, image_id_from_name
from edge_pose.draw import draw_people
from edge_pose.keypoints import COCO17_NAMES, COCO17_SKELETON


def test_whole_frame():
    boxes = WholeFrame().boxes(np.zeros((48, 64, 3), np.uint8))
    np.testing.assert_array_equal(boxes, [[0, 0, 64, 48, 1]])


def test_image_id_from_coco_names():
    assert image_id_from_name("000000000785.jpg") == 785
    assert image_id_from_name("/x/COCO_val2014_000000000042.jpg") == 42
    assert image_id_from_name("holiday.jpg") is None


def test_detections_filtered_by_image_and_score():
    dets = CocoBoxes(coco_mini() / "test_coco_det_AP_H_56.json", score_threshold=0.5)
    raw = json.loads((coco_mini() / "test_coco_det_AP_H_56.json").read_text())
    boxes = dets.boxes(np.zeros((1, 1, 3), np.uint8), "000000000785.jpg")
    expect = [d for d in raw if d["image_id"] == 785 and d["score"] >= 0.5]
    assert len(boxes) == len(expect) > 0
    assert (boxes[:, 4] >= 0.5).all() and (np.diff(boxes[:, 4]) <= 0).all()  # best first
    np.testing.assert_allclose(boxes[0, :4], max(expect, key=lambda d: d["score"])["bbox"], rtol=1e-6)


def test_ground_truth_file_gives_non_crowd_person_boxes():
    gt = json.loads((coco_mini() / "test_coco.json").read_text())
    src = CocoBoxes(coco_mini() / "test_coco.json")
    for img in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == img["id"] and not a.get("iscrowd")]
        boxes = src.boxes(np.zeros((1, 1, 3), np.uint8), img["file_name"])
        assert len(boxes) == len(anns)
        assert (boxes[:, 4] == 1).all()


def test_broken_json_is_one_line(tmp_path):
    bad = tmp_path / "det.json"
    bad.write_text('[{"image_id": 1, "bbox": [1, 2, 3')
    with pytest.raises(BoxError) as err:
        CocoBoxes(bad)
    assert "det.json: broken JSON" in str(err.value) and "\n" not in str(err.value)
    bad.write_text('[{"image_id": 1, "box": [1, 2, 3, 4], "score": 1}]')
    with pytest.raises(BoxError, match=r"detections\[0\]: missing 'bbox'"):
        CocoBoxes(bad)
    bad.write_text('{"what": 1}')
    with pytest.raises(BoxError, match="expected a COCO"):
        box_source(str(bad))
    with pytest.raises(BoxError, match="cannot read"):
        CocoBoxes(tmp_path / "missing.json")


def test_unknown_image_name_is_one_line():
    src = CocoBoxes(coco_mini() / "test_coco_det_AP_H_56.json")
    with pytest.raises(BoxError, match="image id of 'holiday.jpg'"):
        src.boxes(np.zeros((1, 1, 3), np.uint8), "holiday.jpg")


def test_hog_people_or_a_clear_reason():
    """OpenCV 4 ships HOG; OpenCV 5 moved it to contrib: then the error says so in one line."""
    image = cv2.imread(str(coco_mini() / "000000000785.jpg"))
    if not hasattr(cv2, "HOGDescriptor") and not hasattr(getattr(cv2, "xobjdetect", None), "HOGDescriptor"):
        with pytest.raises(BoxError, match="HOG people detector: not in this OpenCV"):
            box_source("hog")
        return
    gt = CocoBoxes(coco_mini() / "test_coco.json")
    for name in ("000000196141.jpg", "000000197388.jpg"):
        found = HogPeople().boxes(cv2.imread(str(coco_mini() / name)), name)
        assert found.shape[1] == 5 and len(found) >= 1
        assert max(_iou(a, b) for a in found for b in gt.boxes(image, name)) > 0.2


def _iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_draw_people_marks_limbs_only_for_confident_joints():
    image = np.zeros((200, 200, 3), np.uint8)
    kp = np.zeros((17, 2), np.float32)
    kp[5], kp[7] = (50, 50), (150, 150)  # left shoulder -> left elbow
    scores = np.zeros(17, np.float32)
    scores[[5, 7]] = 0.9
    person = SimpleNamespace(keypoints=kp, scores=scores, box=(10, 10, 180, 180))
    out = draw_people(image, [person], COCO17_SKELETON, COCO17_NAMES)
    assert image.max() == 0  # drawn on a copy
    assert out[100, 100].any() and out[10, 100].any()  # the limb and the box
    assert not out[0:5, 0:5].any()
    scores[7] = 0.1
    out = draw_people(image, [person], COCO17_SKELETON, COCO17_NAMES)
    assert not out[100, 100].any()

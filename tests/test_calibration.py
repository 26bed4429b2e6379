"""Crop sets from COCO (GT boxes and detection files), image folders and videos; seeded splits; bad data."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from shared import coco_mini

from calibration.cropset import CalibrationDataError, SmallCropSetWarning
from calibration.datasets import load_crops
from edge_pose.preprocess import crop_people

SIZE = (256, 192)


def _coco():
    return coco_mini() / "test_coco.json", coco_mini() / "test_coco_det_AP_H_56.json"


def test_coco_ground_truth_boxes_give_one_crop_per_annotated_person():
    gt_file, _ = _coco()
    cs = load_crops(gt_file, SIZE)
    data = json.loads(gt_file.read_text())
    annotated = [a for a in data["annotations"] if a["num_keypoints"] > 0]
    assert len(cs) == len(annotated) == 12
    assert cs.crops.shape == (12, 256, 192, 3) and cs.crops.dtype == np.uint8
    assert cs.kind == "coco-gt" and cs.has_ground_truth
    assert cs.gt_keypoints.shape == (12, 17, 3)
    # the crop is exactly the runtime's crop of that box
    i = cs.ann_ids.index(annotated[0]["id"])
    image = cv2.imread(cs.image_paths[i])
    expect = crop_people(image, [annotated[0]["bbox"]], SIZE)
    np.testing.assert_array_equal(cs.crops[i], expect.images[0])
    np.testing.assert_allclose(cs.centers[i], expect.centers[0])


def test_coco_detection_file_boxes_and_seeded_limit():
    gt_file, det_file = _coco()
    everything = load_crops(gt_file, SIZE, boxes=det_file)
    assert len(everything) == 118 and everything.kind == "coco-det" and not everything.has_ground_truth
    assert everything.describe()["boxes"] == str(det_file)
    a = load_crops(gt_file, SIZE, boxes=det_file, limit=20, seed=1)
    b = load_crops(gt_file, SIZE, boxes=det_file, limit=20, seed=1)
    c = load_crops(gt_file, SIZE, boxes=det_file, limit=20, seed=2)
    assert len(a) == 20
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.boxes, c.boxes)


def test_split_is_disjoint_seeded_and_warns_when_small():
    gt_file, det_file = _coco()
    cs = load_crops(gt_file, SIZE, boxes=det_file, limit=40)
    calib, evaluation = cs.split(24, 10, seed=3)
    assert (len(calib), len(evaluation)) == (24, 10)
    as_set = lambda s: {tuple(np.round(b, 3)) for b in s.boxes}  # noqa: E731
    assert not as_set(calib) & as_set(evaluation)
    again, _ = cs.split(24, 10, seed=3)
    np.testing.assert_array_equal(calib.boxes, again.boxes)
    with pytest.warns(SmallCropSetWarning, match="24 crops"):
        assert calib.warn_if_small("calibration")
    assert not evaluation.warn_if_small("evaluation")
    with pytest.warns(SmallCropSetWarning, match="cannot give 40"):
        calib, evaluation = cs.split(40)
    assert (len(calib), len(evaluation)) == (30, 10)
    with pytest.raises(CalibrationDataError, match="cannot be split"):
        cs.subset([0]).split(1)


def test_image_folder_whole_image(tmp_path):
    for name in ("000000000785.jpg", "000000040083.jpg"):
        shutil.copy(coco_mini() / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    cs = load_crops(tmp_path, (192, 192), detector="whole")
    assert len(cs) == 2 and cs.kind == "folder"
    h, w = cv2.imread(str(tmp_path / "000000040083.jpg")).shape[:2]
    np.testing.assert_allclose(cs.boxes[1], [0, 0, w, h])


def test_video_every_nth_frame(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(25):
        frame = np.full((120, 160, 3), 10 * i, np.uint8)
        writer.write(frame)
    writer.release()
    cs = load_crops(path, (128, 96), every_n=10, detector="whole")
    assert len(cs) == 3 and cs.kind == "video"
    assert cs.image_ids == [0, 10, 20]
    centre = cs.crops[:, 64, 48].mean(-1)  # frames were written with grey levels 10 * index
    np.testing.assert_allclose(centre, [0, 100, 200], atol=6)


@pytest.mark.parametrize("case, message", [
    ("empty_folder", "no images"),
    ("corrupt_image", "bad.jpg: not a readable image"),
    ("broken_json", "broken JSON"),
    ("json_without_images", "none of its 4 images found"),
    ("missing", "no such file"),
])
def test_bad_data_is_one_line(tmp_path, case, message):
    if case == "empty_folder":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "corrupt_image":
        data = tmp_path / "imgs"
        data.mkdir()
        (data / "bad.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    elif case == "broken_json":
        data = tmp_path / "broken.json"
        data.write_text('{"images": [')
    elif case == "json_without_images":
        data = tmp_path / "test_coco.json"
        shutil.copy(_coco()[0], data)
    else:
        data = tmp_path / "nothing.json"
    with pytest.raises(CalibrationDataError, match=message) as info:
        load_crops(data, SIZE)
    assert "\n" not in str(info.value)


def test_eval_size_limits_the_ground_truth_crops_when_calibrating_on_detector_boxes():
    from calibration.plan import calibration_and_eval

    gt_file, det_file = _coco()
    calib, full = calibration_and_eval(SIZE, gt_file, boxes=det_file, calib_size=8)
    _, five = calibration_and_eval(SIZE, gt_file, boxes=det_file, calib_size=8, eval_size=5)
    assert len(calib) == 8 and full.has_ground_truth and len(five) == 5 < len(full)
    assert set(map(tuple, five.boxes)) <= set(map(tuple, full.boxes))

"""PoseEstimator and `edge-pose predict` on real bundles of the shared models and real COCO images.

PCK@0.2 as the models' NOTICE files measure it (see edge_pose/metrics.py): a joint is correct within 0.2 x the
longer side of the person's ground-truth box, labelled joints (v > 0) only, each person's share averaged over the
12 non-crowd people with keypoints in coco-mini. This definition is the one that reproduces the NOTICE's
model-free box-centre baselines exactly (0.223 for 17 COCO joints, 0.302 for the 12 body joints), checked below;
pooling all joints, or normalising by the box diagonal, mean side or torso, gives other baselines.
Crops: SimpleBaseline with padding 1.25 (its NOTICE says so: 0.955 measured here); CPM on the tight ground-truth
crop (padding 1.0; its NOTICE says "ground-truth crops"): 0.785 here, 0.770 with padding 1.25.
"""
import json
import subprocess
import sys

import cv2
import numpy as np
from shared import coco_mini

from edge_pose import Person, PoseEstimator
from edge_pose.keypoints import AIC14_NAMES, AIC14_TO_COCO17, COCO17_NAMES
from edge_pose.metrics import box_iou, joint_map, match_boxes, mean_pck, person_pck

BODY12 = [(i, c) for i, c in enumerate(AIC14_TO_COCO17) if c is not None]


def ground_truth():
    gt = json.loads((coco_mini() / "test_coco.json").read_text())
    for img in gt["images"]:
        anns = [a for a in gt["annotations"]
                if a["image_id"] == img["id"] and not a["iscrowd"] and a["num_keypoints"] > 0]
        yield img, anns


def measure_pck(estimator, pairs):
    per_person = []
    for img, anns in ground_truth():
        image = cv2.imread(str(coco_mini() / img["file_name"]))
        people = estimator.predict(image, np.array([a["bbox"] for a in anns]))
        assert len(people) == len(anns)
        per_person += [person_pck(p.keypoints, a["keypoints"], a["bbox"], pairs) for p, a in zip(people, anns)]
    return mean_pck(per_person), len(per_person)


def test_pck_definition_reproduces_the_notice_baselines():
    """Box centre as every joint: NOTICE says 0.223 (SimpleBaseline, 17 joints) and 0.302 (CPM, 12 body joints)."""
    pairs17 = [(i, i) for i in range(17)]
    res17, res12 = [], []
    for _, anns in ground_truth():
        for a in anns:
            x, y, w, h = a["bbox"]
            centre = np.tile([x + w / 2, y + h / 2], (17, 1))
            res17.append(person_pck(centre, a["keypoints"], a["bbox"], pairs17))
            res12.append(person_pck(centre[:14], a["keypoints"], a["bbox"], BODY12))
    assert len(res17) == 12
    assert round(mean_pck(res17), 3) == 0.223
    assert round(mean_pck(res12), 3) == 0.302


def test_detections_match_ground_truth_people_by_iou():
    gt = [[0, 0, 10, 10], [100, 100, 20, 40]]
    dets = [[101, 99, 20, 40], [50, 50, 5, 5], [1, 0, 10, 10], [0, 0, 11, 10]]
    np.testing.assert_allclose(box_iou([[0, 0, 10, 10]], [[5, 0, 10, 10]]), [[50 / 150]])
    assert sorted(match_boxes(dets, gt)) == [(0, 1), (3, 0)]  # best overlap wins, one detection per person
    assert match_boxes(dets[1:2], gt) == []


def test_simplebaseline_reproduces_notice_pck(simplebaseline_ov_bundle):
    est = PoseEstimator(simplebaseline_ov_bundle.path)
    pck, people = measure_pck(est, joint_map(est.keypoints.names))
    assert people == 12
    assert abs(pck - 0.950) <= 0.02, pck


def test_cpm_reproduces_notice_pck_on_12_body_joints(cpm_bundle):
    est = PoseEstimator(cpm_bundle.path)  # the bundle carries padding 1.0 (tests/bundles.py)
    assert est.padding == 1.0
    assert est.keypoints.names == AIC14_NAMES
    assert joint_map(AIC14_NAMES, COCO17_NAMES) == BODY12  # name matching == the documented AIC->COCO map
    pck, people = measure_pck(est, BODY12)
    assert people == 12
    assert abs(pck - 0.795) <= 0.02, pck


def test_predict_api_batching_boxes_and_timings(simplebaseline_ov_bundle):
    est = PoseEstimator(simplebaseline_ov_bundle.path)
    image = cv2.imread(str(coco_mini() / "000000196141.jpg"))
    _, anns = next((img, a) for img, a in ground_truth() if img["file_name"] == "000000196141.jpg")
    boxes = np.array([a["bbox"] + [0.5] for a in anns], np.float32)
    people = est.predict(image, boxes)
    assert set(est.last_timings) >= {"crop", "infer", "decode", "total"} and est.last_timings["people"] == len(anns)
    assert all(isinstance(p, Person) and p.keypoints.shape == (17, 2) and p.scores.shape == (17,) for p in people)
    alone = est.predict(image, boxes[2:3])[0]  # a batch decodes each person as if alone
    np.testing.assert_allclose(alone.keypoints, people[2].keypoints, atol=1e-3)
    np.testing.assert_array_equal(people[1].box, boxes[1, :4])
    assert 0 < people[0].score <= 0.5  # box score x mean confident keypoint score
    whole = est.predict(image)  # no boxes: the whole frame
    assert len(whole) == 1 and np.array_equal(whole[0].box, [0, 0, image.shape[1], image.shape[0]])
    assert est.predict(image, np.zeros((0, 4))) == []
    flip = PoseEstimator(simplebaseline_ov_bundle.path, flip=True)
    flipped = flip.predict(image, boxes)
    moved = np.linalg.norm(flipped[2].keypoints - people[2].keypoints, axis=1)
    assert 0 < np.median(moved) < 10  # flip test refines, it does not move joints elsewhere


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edge_pose.cli.main", "predict", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_predict_writes_coco_results_and_drawn_image(simplebaseline_ov_bundle, tmp_path):
    image = coco_mini() / "000000000785.jpg"
    res = _cli(simplebaseline_ov_bundle.path, image, "--boxes", coco_mini() / "test_coco.json", "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "keypoints.json").read_text())
    assert len(results) == 1 and results[0]["image_id"] == 785 and results[0]["category_id"] == 1
    assert len(results[0]["keypoints"]) == 17 * 3 and 0 < results[0]["score"] <= 1
    kp = np.array(results[0]["keypoints"]).reshape(17, 3)
    gt = np.array(json.loads((coco_mini() / "test_coco.json").read_text())["annotations"][0]["keypoints"])
    assert np.median(np.linalg.norm(kp[:, :2] - gt.reshape(17, 3)[:, :2], axis=1)) < 15
    drawn = cv2.imread(str(tmp_path / image.name))
    assert drawn.shape == cv2.imread(str(image)).shape and (drawn != cv2.imread(str(image))).any()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["people"] == 1 and summary["keypoints"] == COCO17_NAMES


def test_cli_predict_video_with_index_ids(cpm_bundle, tmp_path):
    video = tmp_path / "clip.mp4"
    frame = cv2.resize(cv2.imread(str(coco_mini() / "000000000785.jpg")), (320, 212))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 212))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    res = _cli(cpm_bundle.path, video, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "out" / "keypoints.json").read_text())
    assert [r["image_id"] for r in results] == [0, 1, 2] and len(results[0]["keypoints"]) == 14 * 3
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_cli_predict_corrupt_image_is_one_line(cpm_bundle, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    res = _cli(cpm_bundle.path, bad, "--out", tmp_path / "out")
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "XNNPACK" not in ln]
    assert lines == [f"edge-pose predict: error: {bad}: not a readable image: truncated JPEG (no frame header)"]
    res = _cli(cpm_bundle.path, tmp_path / "nothing.avi", "--out", tmp_path / "out")
    assert res.returncode == 2 and "nothing.avi: no such file" in res.stderr


def test_cli_predict_folder_skips_an_unreadable_image_with_one_line(simplebaseline_ov_bundle, tmp_path, capsys):
    from edge_pose.cli.main import main

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "000000040083.jpg").symlink_to(coco_mini() / "000000040083.jpg")
    (folder / "zz_broken.png").write_bytes(b"not a png")
    assert main(["predict", str(simplebaseline_ov_bundle.path), str(folder), "--gt",
                 str(coco_mini() / "test_coco.json"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"edge-pose predict: skipped: {folder / 'zz_broken.png'}: not a readable image" in err
    results = json.loads((tmp_path / "out" / "keypoints.json").read_text())
    assert results and {r["image_id"] for r in results} == {40083}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"] == 1 and summary["pck@0.2"]["people"] >= 1 and summary["pck@0.2"]["value"] > 0.5


def _renamed_coco_mini(root):
    """coco-mini as a user's own dataset: files named 001799.jpg.. (digits that are not the ids), ids 1..N in the
    GT's images table, detections by those ids."""
    import shutil

    gt = json.loads((coco_mini() / "test_coco.json").read_text())
    dets = json.loads((coco_mini() / "test_coco_det_AP_H_56.json").read_text())
    images = root / "images"
    images.mkdir()
    new_id = {}
    for i, img in enumerate(gt["images"], 1):
        name = f"{1000 * i + 799:06d}.jpg"
        shutil.copyfile(coco_mini() / img["file_name"], images / name)
        new_id[img["id"]] = i
        img.update(id=i, file_name=name)
    for a in gt["annotations"]:
        a["image_id"] = new_id[a["image_id"]]
    for d in dets:
        d["image_id"] = new_id[d["image_id"]]
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "dets.json").write_text(json.dumps(dets))
    return images, root / "gt.json", root / "dets.json", new_id


def test_cli_predict_matches_detections_through_the_gt_images_table(simplebaseline_ov_bundle, tmp_path):
    images, gt, dets, new_id = _renamed_coco_mini(tmp_path)
    res = _cli(simplebaseline_ov_bundle.path, images, "--boxes", dets, "--gt", gt, "--score-threshold", "0.5",
               "--no-draw", "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr
    results = json.loads((tmp_path / "out" / "keypoints.json").read_text())
    ref = _cli(simplebaseline_ov_bundle.path, coco_mini(), "--boxes", coco_mini() / "test_coco_det_AP_H_56.json",
               "--gt", coco_mini() / "test_coco.json", "--score-threshold", "0.5", "--no-draw",
               "--out", tmp_path / "ref")
    expected = json.loads((tmp_path / "ref" / "keypoints.json").read_text())
    assert len(results) == len(expected) > 4
    assert sorted(r["image_id"] for r in results) == sorted(new_id[r["image_id"]] for r in expected)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["pck@0.2"]["people"] >= 10 and summary["pck@0.2"]["value"] > 0.8


def test_cli_predict_warns_once_when_no_box_matches_an_image(simplebaseline_ov_bundle, tmp_path):
    images, _, dets, _ = _renamed_coco_mini(tmp_path)
    res = _cli(simplebaseline_ov_bundle.path, images, "--boxes", dets, "--no-draw", "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and str(dets) in warnings[0] and "--gt" in warnings[0]
    assert json.loads((tmp_path / "out" / "keypoints.json").read_text()) == []


def test_cli_predict_refuses_non_positive_padding(cpm_bundle, tmp_path):
    res = _cli(cpm_bundle.path, coco_mini() / "000000000785.jpg", "--padding", "-1", "--out", tmp_path)
    assert res.returncode == 2 and "--padding -1: must be a positive number" in res.stderr
    assert "Traceback" not in res.stderr

"""Fidelity figures behave: identical heatmaps are perfect, perturbed ones are measurably worse; AP through
pycocotools on coco-mini ground truth; thresholds per precision; the printed table."""
from __future__ import annotations

import numpy as np
import pytest
from shared import coco_mini

from calibration.cocoeval import instance_scores
from calibration.datasets import load_crops
from calibration.fidelity import Thresholds, compare, format_table, oks
from edge_pose.keypoints import aic14, coco17
from edge_pose.preprocess import warp_matrices

SIZE = (256, 192)
HM = (64, 48)


@pytest.fixture(scope="module")
def gt_crops():
    return load_crops(coco_mini() / "test_coco.json", SIZE)


def _render(crops, shift_px: float = 0.0) -> np.ndarray:
    """Gaussian heatmaps (N, 17, 64, 48) peaking at each person's ground-truth joints (shifted right by shift_px)."""
    mats = warp_matrices(crops.centers, crops.scales, SIZE)
    xy = crops.gt_keypoints[..., :2].astype(np.float64)
    in_crop = np.einsum("nij,nkj->nki", mats[:, :, :2], xy) + mats[:, None, :, 2]
    hm_xy = in_crop / (SIZE[0] / HM[0]) + [shift_px, 0.0]
    ys, xs = np.mgrid[0:HM[0], 0:HM[1]]
    d2 = (xs - hm_xy[..., 0, None, None]) ** 2 + (ys - hm_xy[..., 1, None, None]) ** 2
    maps = np.exp(-d2 / (2 * 2.0 ** 2))
    maps *= (crops.gt_keypoints[..., 2] > 0)[..., None, None]  # unlabelled joints: flat maps
    return maps.astype(np.float32)


def test_identical_heatmaps_are_perfect(gt_crops):
    ref = _render(gt_crops)
    f = compare(ref, ref.copy(), SIZE, gt_crops, coco17())
    assert f["crops"] == 12
    assert f["heatmap_rel_l2"] == 0 and f["heatmap_max_rel_diff"] == 0
    assert f["keypoint_error_px"] == 0 and f["keypoint_within_1px"] == 1.0
    assert f["oks_agreement"] == pytest.approx(1.0)
    assert f["ap_reference"] == f["ap_candidate"] and f["ap_drop"] == 0
    assert f["ap_reference"] > 90  # heatmaps at the ground truth decode back onto it: AP near 100
    assert not Thresholds().check("int8", f) and not Thresholds().check("fp32", f)


def test_perturbed_heatmaps_are_degraded(gt_crops):
    ref = _render(gt_crops)
    rng = np.random.default_rng(0)
    noisy = ref + rng.normal(0, 0.01, ref.shape).astype(np.float32)
    shifted = _render(gt_crops, shift_px=3.0)
    f_noise = compare(ref, noisy, SIZE, gt_crops, coco17())
    f_shift = compare(ref, shifted, SIZE, gt_crops, coco17())
    assert 0 < f_noise["heatmap_rel_l2"] < f_shift["heatmap_rel_l2"]
    assert f_shift["keypoint_error_px"] == pytest.approx(3.0, abs=0.3)  # flat (unlabelled) maps are left out
    assert f_shift["joints_without_peak"] == int((gt_crops.gt_keypoints[..., 2] == 0).sum()) > 0
    assert f_shift["keypoint_within_1px"] < 0.5
    assert f_shift["oks_agreement"] < f_noise["oks_agreement"] <= 1.0
    assert f_shift["ap_drop"] > 1.0
    failed = Thresholds().check("int8", f_shift)
    assert any("OKS" in m for m in failed) and any("AP drop" in m for m in failed)
    assert Thresholds().check("fp32", f_noise) and Thresholds().check("fp16", f_shift)
    assert not Thresholds(int8_oks_agreement=0.0, int8_ap_drop=100).check("int8", f_shift)


def test_figures_without_crops_or_ground_truth():
    rng = np.random.default_rng(1)
    ref = rng.random((3, 14, 96, 96), dtype=np.float32)
    f = compare(ref, ref * 1.00001, (192, 192))
    assert set(f) == {"crops", "heatmap_rel_l2", "heatmap_max_rel_diff", "keypoint_error_px", "keypoint_within_1px",
                      "joints_without_peak"}
    assert f["heatmap_max_rel_diff"] == pytest.approx(1e-5, rel=0.1)
    with pytest.raises(ValueError, match="differ in shape"):
        compare(ref, ref[:, :, :48], (192, 192))


def test_ap_scores_a_fourteen_joint_model_on_the_joints_it_shares(gt_crops):
    """An AIC-14 prediction made from COCO ground truth by joint name scores near 100 on the 12 shared joints."""
    ref = _render(gt_crops)
    names = aic14().names
    order = [coco17().names.index(n) if n in coco17().names else 0 for n in names]
    aic = ref[:, order]
    f = compare(aic, aic.copy(), SIZE, gt_crops, aic14())
    assert f["ap_joints"] == 12 and f["ap_reference"] > 90


def test_oks_matches_its_definition():
    ref = np.zeros((1, 2, 2))
    pred = ref + [[[3.0, 4.0], [0.0, 0.0]]]  # 5 px off on the first joint
    value = oks(pred, ref, np.array([100.0]), [0.1, 0.1])
    assert value[0] == pytest.approx((np.exp(-25 / (2 * 100 * 0.04)) + 1) / 2)


def test_table_lists_rows_and_dashes_for_missing():
    rows = [{"bundle": "m-tflite-int8", "precision": "int8", "crops": 12, "heatmap_rel_l2": 0.05,
             "oks_agreement": 0.97, "passed": True},
            {"bundle": "m-tflite-fp32", "precision": "fp32", "crops": 12, "heatmap_rel_l2": 1e-7, "passed": True}]
    text = format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 4 and "OKS" in lines[0] and "m-tflite-int8" in lines[2]
    assert lines[3].split()[4] == "-"  # fp32 row has no OKS


def test_people_are_ranked_as_mmpose_ranks_them():
    scores = np.array([[0.9, 0.1, 0.5], [0.1, 0.05, 0.0]])
    np.testing.assert_allclose(instance_scores(scores, [0.5, 1.0]), [0.5 * 0.7, 0.0])


def test_a_joint_with_no_reference_peak_is_left_out(gt_crops):
    """An all-zero reference map has no keypoint: candidate noise there must not count as keypoint error."""
    ref = _render(gt_crops)
    cand = ref.copy()
    ref[0, 0] = 0.0
    cand[0, 0] = 0.0
    cand[0, 0, 40, 40] = 1e-4  # noise far from index 0
    f = compare(ref, cand, SIZE, gt_crops, coco17())
    assert f["keypoint_error_px"] == 0 and f["oks_agreement"] == pytest.approx(1.0)
    unlabelled = int((gt_crops.gt_keypoints[..., 2] == 0).sum())
    assert f["joints_without_peak"] == unlabelled + int(gt_crops.gt_keypoints[0, 0, 2] > 0)


def test_the_table_says_what_its_columns_mean():
    from calibration.fidelity import format_table, legend

    rows = [{"bundle": "b", "precision": "int8", "oks_agreement": 0.97, "keypoint_error_px": 0.4, "passed": True}]
    text = legend(rows)
    assert "OKS: keypoint similarity" in text and "kp err px: mean keypoint distance" in text
    assert "max rel" not in text  # only the columns the table shows
    assert "OKS" in format_table(rows)

"""Decoder parity with mmpose 1.3.2 (MSRAHeatmap plain/unbiased, UDPHeatmap, flip_heatmaps) on the shared fixtures."""
import numpy as np
import pytest
from shared import fixture

from edge_pose.decode import decode_heatmaps, flip_heatmaps, fuse_flip
from edge_pose.decode.common import modulate
from edge_pose.errors import EdgePoseError
from edge_pose.keypoints import coco17

FIXTURE_NAMES = {"msra": "msra", "dark": "msra_dark", "udp": "udp"}


@pytest.fixture(scope="module")
def heatmaps():
    return np.load(fixture("decode_heatmaps.npy"))


@pytest.mark.parametrize("method", ["msra", "dark", "udp"])
def test_decode_matches_mmpose(heatmaps, method):
    ref_kp = np.load(fixture(f"decode_{FIXTURE_NAMES[method]}_keypoints.npy"))
    ref_scores = np.load(fixture(f"decode_{FIXTURE_NAMES[method]}_scores.npy"))
    kp, scores = decode_heatmaps(heatmaps, method, input_size=(256, 192), blur_kernel=11)
    assert kp.shape == (6, 17, 2) and kp.dtype == np.float32 and scores.shape == (6, 17)
    finite = np.isfinite(ref_kp).all(axis=-1)
    assert np.abs(kp - ref_kp)[finite].max() <= 1e-3
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    # where mmpose returns NaN (empty / non-positive maps) we return finite keypoints with score <= 0
    assert np.isfinite(kp).all()
    assert (scores[~finite] <= 0).all()
    if method == "udp":
        assert (~finite).sum() == 2


def test_nan_cases_are_the_empty_and_non_positive_maps(heatmaps):
    ref_kp = np.load(fixture("decode_udp_keypoints.npy"))
    bad = np.argwhere(~np.isfinite(ref_kp).all(axis=-1))
    for n, k in bad:
        assert heatmaps[n, k].max() <= 0


def test_plateau_ties_resolve_to_first_index():
    hm = np.zeros((1, 2, 8, 8), np.float32)
    hm[0, 0, 3:5, 2:6] = 7.0  # int8-like plateau: first max in row-major order is (x=2, y=3)
    hm[0, 1, 5, 5] = hm[0, 1, 5, 6] = 3.0
    kp, scores = decode_heatmaps(hm, "msra", input_size=(32, 32))
    # (2, 3): left neighbour 0 < right neighbour 7 -> +0.25 in x; y neighbours 0 above, 7 below -> +0.25
    np.testing.assert_allclose(kp[0, 0], np.array([2.25, 3.25]) * 4)
    np.testing.assert_allclose(kp[0, 1], np.array([5.25, 5.0]) * 4)
    np.testing.assert_allclose(scores[0], [7.0, 3.0])


def test_equal_neighbours_do_not_move_the_peak():
    hm = np.zeros((1, 1, 8, 8), np.float32)
    hm[0, 0, 4, 4] = 5
    hm[0, 0, 4, 3] = hm[0, 0, 4, 5] = hm[0, 0, 3, 4] = hm[0, 0, 5, 4] = 2
    kp, _ = decode_heatmaps(hm, "msra", input_size=(32, 32))
    np.testing.assert_allclose(kp[0, 0], [16.0, 16.0])


@pytest.mark.parametrize("method", ["msra", "dark", "udp"])
def test_layouts_and_batch_independence(heatmaps, method):
    kp, scores = decode_heatmaps(heatmaps, method)
    kp_nhwc, scores_nhwc = decode_heatmaps(heatmaps.transpose(0, 2, 3, 1), method, layout="NHWC")
    np.testing.assert_array_equal(kp, kp_nhwc)
    np.testing.assert_array_equal(scores, scores_nhwc)
    one, _ = decode_heatmaps(heatmaps[3], method)  # a 3-D array is one person
    np.testing.assert_array_equal(one[0], kp[3])


def test_dark_recovers_subpixel_gaussian_centre():
    ys, xs = np.mgrid[0:64, 0:48]
    cx, cy = 20.3, 30.7
    hm = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.0 ** 2)).astype(np.float32)[None, None]
    kp_dark, _ = decode_heatmaps(hm, "dark")
    kp_msra, _ = decode_heatmaps(hm, "msra")
    truth = np.array([cx, cy]) * 4
    assert np.abs(kp_dark[0, 0] - truth).max() < 0.1 < np.abs(kp_msra[0, 0] - truth).max()


def test_blur_keeps_each_map_maximum(heatmaps):
    maps = heatmaps[1:3].reshape(-1, 64, 48)
    blurred, gain = modulate(maps, 11)
    out = blurred * gain[:, None, None]
    np.testing.assert_allclose(out.reshape(len(maps), -1).max(1), maps.reshape(len(maps), -1).max(1), rtol=1e-5)


def test_flip_matches_mmpose(heatmaps):
    ref = np.load(fixture("flip_heatmaps_shifted.npy"))
    flip_idx = coco17().flip_indices
    np.testing.assert_array_equal(flip_heatmaps(heatmaps, flip_idx, shift=True), ref)
    nhwc = flip_heatmaps(heatmaps.transpose(0, 2, 3, 1), flip_idx, layout="NHWC")
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), ref)
    np.testing.assert_allclose(fuse_flip(heatmaps, heatmaps, flip_idx), (heatmaps + ref) / 2, atol=1e-7)


def test_bad_arguments_are_one_line_errors(heatmaps):
    with pytest.raises(EdgePoseError, match="method"):
        decode_heatmaps(heatmaps, "simcc")
    with pytest.raises(EdgePoseError, match="odd"):
        decode_heatmaps(heatmaps, "dark", blur_kernel=10)
    with pytest.raises(EdgePoseError, match="4-D"):
        decode_heatmaps(heatmaps[0, 0], "msra")
    with pytest.raises(EdgePoseError, match="flip indices"):
        flip_heatmaps(heatmaps, [0, 1])


def test_stacked_blur_equals_per_map_blur(heatmaps):
    """The one-call stacked blur is mmpose's per-map zero-padded cv2 blur, bit for bit."""
    import cv2

    maps = heatmaps.reshape(-1, 64, 48)[:20]
    blurred, _ = modulate(maps, 11)
    for i, m in enumerate(maps):
        padded = np.zeros((74, 58), np.float32)
        padded[5:-5, 5:-5] = m
        np.testing.assert_array_equal(blurred[i], cv2.GaussianBlur(padded, (11, 11), 0)[5:-5, 5:-5])


def test_benchmark_script_checks_agreement_and_prints_its_table():
    """benchmarks/decode.py compares against its own per-keypoint loop before timing; keep it runnable."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "decode.py"
    res = subprocess.run([sys.executable, str(script), "--people", "1", "2", "--repeat", "1"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rows = [ln.split() for ln in res.stdout.splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [(m, n) for m in ("msra", "dark", "udp") for n in ("1", "2")]
    assert all(float(r[5]) <= 1e-3 for r in rows)  # vectorised == loop reference

"""Decoder parity with mmpose 1.3.2 (MSRAHeatmap plain/unbiased, UDPHeatmap, flip_heatmaps) on the shared fixtures."""
import numpy as np
import pytest
from shared import SIMPLEBASELINE_ONNX, coco_mini, fixture, shared

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


# --- the windowed modulation against a whole-map reference, on maps built to break it -------------------------

def _reference(heatmaps: np.ndarray, method: str, kernel: int = 11, input_size=(256, 192)) -> np.ndarray:
    """mmpose's semantics written plainly: blur each whole zero-padded map, rescale to its maximum, floor or clip,
    log, then per keypoint the finite differences and np.linalg.inv of the Hessian, in mmpose's dtypes (float32;
    UDP's eps term is float64).
    NaN where mmpose's arithmetic gives NaN or where its UDP indexes outside the map (non-positive maps)."""
    import cv2

    n, k, h, w = heatmaps.shape
    b = (kernel - 1) // 2
    out = np.full((n, k, 2), np.nan, np.float32)
    for i in range(n):
        for j in range(k):
            m = heatmaps[i, j].astype(np.float32)
            y, x = divmod(int(np.argmax(m)), w)
            peak = m[y, x]
            padded = np.zeros((h + 2 * b, w + 2 * b), np.float32)
            padded[b:b + h, b:b + w] = m
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[b:b + h, b:b + w]
                blurred = blurred * (peak / blurred.max())
                if method == "dark":
                    px, py = (np.float32(x), np.float32(y)) if peak > 0 else (np.float32(-1), np.float32(-1))
                    lm = np.log(np.maximum(blurred, np.float32(1e-10)))
                    if peak > 0 and 1 < x < w - 2 and 1 < y < h - 2:
                        dx = 0.5 * (lm[y, x + 1] - lm[y, x - 1])
                        dy = 0.5 * (lm[y + 1, x] - lm[y - 1, x])
                        dxx = 0.25 * (lm[y, x + 2] - 2 * lm[y, x] + lm[y, x - 2])
                        dyy = 0.25 * (lm[y + 2, x] - 2 * lm[y, x] + lm[y - 2, x])
                        dxy = 0.25 * (lm[y + 1, x + 1] - lm[y - 1, x + 1] - lm[y + 1, x - 1] + lm[y - 1, x - 1])
                        if dxx * dyy - dxy ** 2 != 0:
                            hessian = np.array([[dxx, dxy], [dxy, dyy]])
                            off = -np.linalg.inv(hessian) @ np.array([[dx], [dy]])
                            px, py = px + off[0, 0], py + off[1, 0]
                    out[i, j] = px * input_size[1] / w, py * input_size[0] / h
                elif peak > 0:  # udp
                    lm = np.pad(np.log(np.clip(blurred, np.float32(1e-3), np.float32(50))), 1, mode="edge")
                    cy, cx = y + 1, x + 1
                    dx = 0.5 * (lm[cy, cx + 1] - lm[cy, cx - 1])
                    dy = 0.5 * (lm[cy + 1, cx] - lm[cy - 1, cx])
                    dxx = lm[cy, cx + 1] - 2 * lm[cy, cx] + lm[cy, cx - 1]
                    dyy = lm[cy + 1, cx] - 2 * lm[cy, cx] + lm[cy - 1, cx]
                    dxy = 0.5 * (lm[cy + 1, cx + 1] - lm[cy, cx + 1] - lm[cy + 1, cx] + lm[cy, cx] + lm[cy, cx]
                                 - lm[cy, cx - 1] - lm[cy - 1, cx] + lm[cy - 1, cx - 1])
                    hessian = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
                    off = np.linalg.inv(hessian) @ np.array([[dx], [dy]])
                    px, py = x - off[0, 0], y - off[1, 0]
                    out[i, j] = px * input_size[1] / (w - 1), py * input_size[0] / (h - 1)
    return out


def _hostile_maps(h: int = 64, w: int = 48, seed: int = 0) -> np.ndarray:
    """One (N, 17, H, W) batch of maps each aimed at a case: peaks on every border, corner and one or two px in,
    flat, zero, negative and tiny maps, clip-straddling peaks, int8-like plateaus, negative rings, noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)

    def peak(cx, cy, amp=1.0, sigma=2.0):
        return amp * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))

    maps = []
    for cx in (0, 0.4, 1, 2, 2.6, w / 2 + 0.3, w - 3, w - 2, w - 1.3, w - 1):  # borders, corners, 1-2 px inside
        for cy in (0, 1, 2.3, h / 2 - 0.2, h - 3, h - 2, h - 1):
            maps.append(peak(cx, cy, rng.uniform(0.2, 1.0), rng.uniform(1.2, 3.0)))
    maps.append(np.full((h, w), 0.5))                        # flat: argmax at (0, 0)
    maps.append(np.zeros((h, w)))                            # empty
    maps.append(np.full((h, w), -0.2))                       # non-positive
    maps.append(peak(10.3, 20.6) - 0.5)                      # negative background, positive peak
    ring = peak(20.2, 30.1, 1.0, 1.0)
    ring[28:33, 18:23] -= 5 * (ring[28:33, 18:23] < 0.5)     # large negatives next to the peak: blur < 0 there
    maps.append(ring)
    maps.append(np.floor(peak(15.4, 40.7) * 12) / 12)        # int8-like plateaus and exact zeros
    maps.append(np.floor(peak(1.2, 1.7) * 6) / 6)            # plateau in a corner
    for amp in (5e-4, 1.5e-3, 3e-3, 2e-2):                   # UDP's 1e-3 clip: all, some or none of the samples
        maps.append(peak(30.5, 12.2, amp, 1.0))
    maps.append(peak(25.5, 33.3, 80.0, 1.5))                 # above UDP's 50 clip
    maps.append(peak(7.7, 9.1, 1e-9, 0.7))                   # DARK's 1e-10 floor at the samples
    maps.append(rng.uniform(-0.1, 1.0, (h, w)))              # noise
    maps.append(rng.normal(0, 1, (h, w)) * (rng.uniform(size=(h, w)) < 0.05))  # sparse spikes, both signs
    maps = np.array(maps, np.float32)
    pad = (-len(maps)) % 17
    maps = np.concatenate([maps, rng.uniform(0, 1, (pad, h, w)).astype(np.float32)])
    return maps.reshape(-1, 17, h, w)


def _assert_matches_reference(heatmaps, method, kernel=11):
    h, w = heatmaps.shape[2:]
    input_size = (4 * h, 4 * w)
    ref = _reference(heatmaps, method, kernel, input_size)
    kp, scores = decode_heatmaps(heatmaps, method, input_size=input_size, blur_kernel=kernel)
    finite = np.isfinite(ref).all(axis=-1)
    err = np.abs(kp - ref)[finite]
    assert err.max() <= 1e-3, f"{method}: max {err.max():.3g} px at {np.argwhere(np.abs(kp - ref) > 1e-3)[:4]}"
    assert np.isfinite(kp).all()
    np.testing.assert_array_equal(scores, heatmaps.reshape(*scores.shape, -1).max(axis=-1))
    return finite


@pytest.mark.parametrize("method", ["dark", "udp"])
def test_windowed_blur_matches_whole_map_reference_on_hostile_maps(method):
    maps = _hostile_maps()
    finite = _assert_matches_reference(maps, method)
    assert finite.mean() > 0.9  # the comparison covers nearly every map, not just the easy ones


@pytest.mark.parametrize("method", ["dark", "udp"])
@pytest.mark.parametrize("size", [(96, 72), (32, 24), (8, 6)])
def test_windowed_blur_other_heatmap_sizes(method, size):
    """Larger maps, CPM's 32x24 and maps smaller than the blur window itself."""
    _assert_matches_reference(_hostile_maps(*size, seed=1), method)


@pytest.mark.parametrize("method", ["dark", "udp"])
def test_windowed_blur_single_map_smaller_than_its_window(method):
    """One 8x6 map holds fewer cells than a blur window spans: the gather goes element by element."""
    _assert_matches_reference(_hostile_maps(8, 6, seed=3)[:1, :1], method)


@pytest.mark.parametrize("method", ["dark", "udp"])
def test_non_finite_heatmaps_decode_to_finite_keypoints_without_warnings(method):
    import warnings

    hm = np.random.default_rng(5).random((1, 17, 64, 48)).astype(np.float32)
    hm[0, 0, 10, 10], hm[0, 1, 20, 20], hm[0, 2] = np.nan, np.inf, np.nan
    hm[0, 3, 30, 30], hm[0, 4, 5, 5], hm[0, 4, 5, 6] = -np.inf, 3e38, -3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kp, _ = decode_heatmaps(hm, method)
    assert np.isfinite(kp).all()
    # the +inf map stays at its maximum, unrefined
    np.testing.assert_allclose(kp[0, 1] / 4 if method == "dark" else kp[0, 1] * [47 / 192, 63 / 256], [20, 20],
                               atol=1e-4)


def test_blurred_grid_is_the_zero_padded_blur():
    """blurred_grid's cells equal cv2's blur of the zero-padded map, also where the grid leaves the map."""
    import cv2

    from edge_pose.decode.window import blurred_grid

    maps = _hostile_maps(seed=4).reshape(-1, 64, 48)[:40]
    idx = maps.reshape(len(maps), -1).argmax(axis=1)
    grid, lowest = blurred_grid(maps, idx, 11, 2)
    for i, m in enumerate(maps):
        padded = np.zeros((64 + 14, 48 + 14), np.float32)
        padded[7:-7, 7:-7] = m
        full = cv2.GaussianBlur(padded, (11, 11), 0, borderType=cv2.BORDER_CONSTANT)
        y, x = divmod(int(idx[i]), 48)
        np.testing.assert_allclose(grid[i], full[y + 5:y + 10, x + 5:x + 10], rtol=1e-5, atol=1e-6 * np.abs(m).max())
        crosses = not (7 <= y < 64 - 7 and 7 <= x < 48 - 7)  # then the zero padding is part of the window
        inner = m[max(y - 7, 0):y + 8, max(x - 7, 0):x + 8].min()
        assert lowest[i] == (min(0.0, inner) if crosses else inner)


@pytest.mark.parametrize("method", ["dark", "udp"])
@pytest.mark.parametrize("kernel", [3, 7, 17])
def test_windowed_blur_other_kernels(method, kernel):
    _assert_matches_reference(_hostile_maps(seed=2)[:2], method, kernel)


@pytest.mark.parametrize("name", ["litehrnet18_256x192_heatmaps.npy", "litehrnet18_384x288_heatmaps.npy",
                                  "res50_256x192_heatmaps.npy", "cpm_256x192_heatmaps_stage5.npy"])
@pytest.mark.parametrize("method", ["dark", "udp"])
def test_windowed_blur_on_real_model_heatmaps(name, method):
    """mmpose's own forward outputs (CPM's stage 5 spans -95..112: UDP's 50 clip and negative blur both occur)."""
    _assert_matches_reference(np.load(fixture(name)), method)


@pytest.fixture(scope="module")
def trained_heatmaps():
    """A trained model's heatmaps: the shared SimpleBaseline ONNX (onnxruntime) on every coco-mini detector box,
    low-scoring ones included (their diffuse maps are where rounding matters most)."""
    import cv2
    import onnxruntime as ort

    from edge_pose.boxes import CocoBoxes
    from edge_pose.preprocess import crop_people

    sess = ort.InferenceSession(str(shared(*SIMPLEBASELINE_ONNX)), providers=["CPUExecutionProvider"])
    boxes = CocoBoxes(coco_mini() / "test_coco_det_AP_H_56.json")
    maps = []
    for path in sorted(coco_mini().glob("*.jpg")):
        image = cv2.imread(str(path))
        crops = crop_people(image, boxes.boxes(image, path.name)[:, :4], (256, 192)).images
        rgb = (crops[..., ::-1].astype(np.float32) - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
        for x in rgb.astype(np.float32).transpose(0, 3, 1, 2):
            maps.append(sess.run(None, {"data": x[None]})[0][0])
    return np.array(maps)


@pytest.mark.parametrize("method", ["dark", "udp"])
def test_windowed_blur_on_trained_model_heatmaps(trained_heatmaps, method):
    assert trained_heatmaps.shape[1:] == (17, 64, 48) and len(trained_heatmaps) > 100
    _assert_matches_reference(trained_heatmaps, method)


def test_whole_map_blur_only_where_the_gain_matters(monkeypatch):
    """The exact fallback (a whole-map blur) runs for the maps whose samples straddle a clip, and only for them."""
    import edge_pose.decode.window as window

    calls = []
    real = window.modulate

    def counting(maps, kernel):
        calls.append(len(maps))
        return real(maps, kernel)

    monkeypatch.setattr(window, "modulate", counting)
    ys, xs = np.mgrid[0:64, 0:48]
    ordinary = np.exp(-((xs - 20.3) ** 2 + (ys - 30.7) ** 2) / 8.0)[None, None].repeat(17, 1).astype(np.float32)
    decode_heatmaps(ordinary, "dark")
    decode_heatmaps(ordinary, "udp")
    assert calls == []
    straddling = ordinary.copy()
    straddling[0, 3] *= 1.5e-3  # peak 1.5e-3: some UDP samples fall under the 1e-3 clip, others do not
    decode_heatmaps(straddling, "udp")
    assert calls == [1]

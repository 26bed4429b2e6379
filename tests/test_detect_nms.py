"""Vectorised greedy NMS equals the plain one-box-at-a-time greedy NMS, on random and adversarial inputs."""
import numpy as np
import pytest

from edge_pose.detect.nms import iou_matrix, nms, reference_nms


def random_boxes(rng, n, size=300.0, clustered=True):
    if clustered:  # people-like clusters: many overlapping candidates around a few objects
        centers = rng.uniform(0, size, (max(1, n // 20), 2))
        c = centers[rng.integers(0, len(centers), n)] + rng.normal(0, 8, (n, 2))
    else:
        c = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(10, 80, (n, 2))
    return np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32), rng.random(n).astype(np.float32)


def chain(n, step=0.25):
    """Each box overlaps its neighbour by IoU 0.6 and the one after by less: greedy keeps every other box, and
    the fixed point needs a step per link (the worst case)."""
    x = np.arange(n, dtype=np.float32) * step * 40
    boxes = np.stack([x, np.zeros(n), x + 40, np.full(n, 40)], 1).astype(np.float32)
    scores = np.linspace(1, 0.01, n).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_random_equals_reference(seed, iou):
    rng = np.random.default_rng(seed)
    boxes, scores = random_boxes(rng, int(rng.integers(1, 250)), clustered=seed % 3 != 0)
    stats = {}
    got = nms(boxes, scores, iou, stats=stats)
    np.testing.assert_array_equal(got, reference_nms(boxes, scores, iou))
    assert not stats["fallback"]


@pytest.mark.parametrize("seed", range(6))
def test_class_aware_and_max_out(seed):
    rng = np.random.default_rng(100 + seed)
    boxes, scores = random_boxes(rng, 300)
    labels = rng.integers(0, 3, 300)
    got = nms(boxes, scores, 0.45, labels=labels, max_out=25)
    want = reference_nms(boxes, scores, 0.45, labels=labels, max_out=25)
    np.testing.assert_array_equal(got, want)
    assert len(got) == 25
    # class-aware keeps at least what single-class keeps: labels only remove suppressions
    assert len(nms(boxes, scores, 0.45, labels=labels)) >= len(nms(boxes, scores, 0.45))


@pytest.mark.parametrize("n", [3, 4, 17, 60])
def test_chains_converge_to_greedy(n):
    boxes, scores = chain(n)
    iou = iou_matrix(boxes)
    assert iou[0, 1] > 0.5 and iou[0, 2] < 0.5  # the chain's shape: neighbours suppress, next-but-one do not
    stats = {}
    got = nms(boxes, scores, 0.5, stats=stats, max_steps=100)
    np.testing.assert_array_equal(got, reference_nms(boxes, scores, 0.5))
    np.testing.assert_array_equal(got, np.arange(0, n, 2))
    assert not stats["fallback"] and stats["steps"] >= n - 1  # a step per link: the bound is tight


@pytest.mark.parametrize("max_out", [None, 1, 5, 100])
def test_capped_steps_fall_back_exactly(max_out):
    boxes, scores = chain(80)
    rng = np.random.default_rng(7)
    more, more_scores = random_boxes(rng, 200)
    boxes, scores = np.concatenate([boxes, more + 400]), np.concatenate([scores, more_scores])
    stats = {}
    got = nms(boxes, scores, 0.5, max_out=max_out, max_steps=4, stats=stats)
    assert stats["fallback"]
    np.testing.assert_array_equal(got, reference_nms(boxes, scores, 0.5, max_out=max_out))


def test_ties_degenerate_and_empty():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 20], [10, 10, 0, 0], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.5, 0.5, 0.9, 0.4, 0.5], np.float32)
    # equal scores keep input order; a zero-area box suppresses nothing; flipped corners are the same box
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), reference_nms(boxes, scores, 0.5))
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [2, 0])
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    assert nms(boxes, scores, 0.5, max_out=0).shape == (0,)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("max_out", [None, 10, 40])
def test_blocks_and_early_stop_equal_reference(seed, max_out):
    """Candidates settled block by block against earlier blocks' decisions, stopping at max_out: still greedy."""
    rng = np.random.default_rng(200 + seed)
    boxes, scores = random_boxes(rng, 400)
    labels = rng.integers(0, 2, 400) if seed % 2 else None
    stats = {}
    got = nms(boxes, scores, 0.5, labels=labels, max_out=max_out, block=64, stats=stats)
    np.testing.assert_array_equal(got, reference_nms(boxes, scores, 0.5, labels=labels, max_out=max_out))
    if max_out is None:
        assert stats["blocks"] == 7  # every block of 64 examined
    else:
        assert len(got) == max_out and stats["blocks"] < 7  # stopped once max_out were kept


def test_chain_across_blocks_with_fallback():
    boxes, scores = chain(200)  # the chain spans 4 blocks of 64, each one past the step cap
    stats = {}
    got = nms(boxes, scores, 0.5, block=64, max_steps=3, stats=stats)
    assert stats["fallback"] and stats["blocks"] == 4
    np.testing.assert_array_equal(got, reference_nms(boxes, scores, 0.5))


def test_top_candidates_equal_a_full_stable_sort():
    from edge_pose.detect.common import top_candidates

    rng = np.random.default_rng(5)
    scores = rng.integers(0, 20, 3000).astype(np.float32) / 20  # int8-like plateaus: many ties at the cut
    for k in (1, 7, 150, 2999, 5000):
        want = np.argsort(-scores, kind="stable")
        want = want[scores[want] > 0.1][:k]
        np.testing.assert_array_equal(top_candidates(scores, 0.1, k), want)

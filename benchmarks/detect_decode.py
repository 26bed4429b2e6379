"""Detector decode + NMS: edge_pose.detect's vectorised decoders against a plain per-anchor / per-box loop.

    python benchmarks/detect_decode.py [--repeats 30]

Cases: a YOLOv8-style head with 2,000 anchors (people-like clusters, scores mostly low), and the shared SSDLite
person detector's real raw outputs (1,917 anchors) on coco-mini's 4 frames, at the pose pipeline's score threshold
(0.05) and at the graph's own (1e-8: every anchor is an NMS candidate). Both sides decode the same outputs to the
same boxes (checked), then greedy NMS and the mapping to frame pixels. Medians, interleaved, one process.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from edge_pose.detect.detector import Detector  # noqa: E402
from edge_pose.detect.nms import nms, reference_nms  # noqa: E402
from edge_pose.detect.preprocess import Geometry  # noqa: E402

SHARED = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared"))


def loop_tail(cands, thr, iou, max_det, geom):
    """Threshold, one-box-at-a-time greedy NMS, per-box mapping: what a direct port does."""
    keep_c = [c for c in cands if c[4] > thr]
    if not keep_c:
        return np.zeros((0, 5), np.float32)
    arr = np.array(keep_c, np.float32)
    out = []
    sy, sx = geom.scale
    top, left = geom.pad
    h, w = geom.image_size
    for k in reference_nms(arr[:, :4], arr[:, 4], iou, max_out=max_det):
        x1, y1, x2, y2, s = arr[k]
        x1, x2 = min(max((x1 - left) / sx, 0), w), min(max((x2 - left) / sx, 0), w)
        y1, y2 = min(max((y1 - top) / sy, 0), h), min(max((y2 - top) / sy, 0), h)
        if x2 > x1 and y2 > y1:
            out.append([x1, y1, x2 - x1, y2 - y1, s])
    return np.array(out, np.float32).reshape(-1, 5)


def loop_yolov8(outputs, spec, geom):
    raw = outputs[0]
    cands = []
    for a in range(raw.shape[2]):
        cx, cy, bw, bh = (float(v) for v in raw[0, :4, a])
        cands.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, float(raw[0, 4, a])])
    return loop_tail(cands, spec["score_threshold"], spec["iou_threshold"], spec["max_detections"], geom)


def loop_ssd(outputs, spec, geom):
    enc, logits = outputs[0].reshape(-1, 4), outputs[1].reshape(len(spec["anchors"]), -1)
    ih, iw = geom.input_size
    cands = []
    for (ty, tx, th, tw), (ya, xa, ha, wa), lg in zip(enc, spec["anchors"], logits):
        yc, xc = ty / 10 * ha + ya, tx / 10 * wa + xa
        h, w = math.exp(th / 5) * ha, math.exp(tw / 5) * wa
        s = 1 / (1 + math.exp(-float(lg[1])))
        cands.append([(xc - w / 2) * iw, (yc - h / 2) * ih, (xc + w / 2) * iw, (yc + h / 2) * ih, s])
    return loop_tail(cands, spec["score_threshold"], spec["iou_threshold"], spec["max_detections"], geom)


def yolov8_case(rng, n=2000, size=(640, 640)):
    centers = rng.uniform(100, 540, (6, 2))
    which = rng.integers(0, 6, n)
    c = centers[which] + rng.normal(0, 25, (n, 2))
    wh = rng.uniform(60, 200, (n, 2))
    scores = np.where(rng.random(n) < 0.15, rng.uniform(0.05, 0.95, n), rng.uniform(0, 0.05, n))
    raw = np.concatenate([c.T, wh.T, scores[None]], 0)[None].astype(np.float32)
    spec = {"head": "yolov8", "input_size": list(size), "outputs": ["output0"], "resize": "letterbox",
            "pad": "center", "score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100}
    geom = Geometry((480, 640), size, (1.0, 1.0), (80.0, 0.0))
    return [raw], spec, geom


def ssd_cases():
    import cv2

    from converters.detect.ssd_tfod import CutSession, cut_ssd

    cut = cut_ssd(SHARED / "models" / "ssdlite-mobilenetv2-person" / "frozen_inference_graph.pb")
    sess = CutSession(cut, threads=2)
    det = Detector(sess, cut.spec())
    frames = []
    for p in sorted((SHARED / "data" / "coco-mini").glob("*.jpg")):
        x, geom = det.prepare(cv2.imread(str(p)))
        frames.append((sess.run(x), geom))
    return cut, frames


def median_ms(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    outs, spec, geom = yolov8_case(rng)
    cases = [("YOLOv8-style, 2,000 anchors, score > 0.05", "yolov8", outs, spec, geom)]
    print("cutting the SSD graph, running it on coco-mini's 4 frames", flush=True)
    cut, frames = ssd_cases()
    for thr, label in ((0.05, "score > 0.05"), (cut.facts["score_threshold"], "score > 1e-8 (graph's own)")):
        spec = cut.spec(score_threshold=thr)
        for i, (o, g) in enumerate(frames):
            cases.append((f"SSD 1,917 anchors, frame {i + 1}, {label}", "ssd", o, spec, g))
    loops = {"yolov8": loop_yolov8, "ssd": loop_ssd}
    for name, head, o, spec, g in cases:
        det = Detector(None, spec)
        fast = det.decode(o, g)
        cands = det.last_stats.get("candidates", 0)
        slow = loops[head](o, spec, g)
        assert fast.shape == slow.shape and np.allclose(fast, slow, atol=1e-2), name  # same boxes both ways
        t_fast = median_ms(lambda: det.decode(o, g), args.repeats)
        t_slow = median_ms(lambda: loops[head](o, spec, g), max(3, args.repeats // 10))
        rows.append((name, cands, len(fast), det.last_stats.get("steps", 0), t_fast, t_slow))
        print(f"  {name}: {t_fast:.2f} ms vs {t_slow:.1f} ms", flush=True)
    # NMS alone on the largest candidate set, to separate it from decoding
    o, g = frames[0]
    spec = cut.spec()
    from edge_pose.detect.ssd import decode_boxes, scores_from_logits

    boxes = decode_boxes(o[0].reshape(-1, 4), spec["anchors"], spec["box_scale"])
    scores = scores_from_logits(o[1].reshape(len(boxes), -1)[:, 1], "sigmoid", 1.0)
    t_nms = median_ms(lambda: nms(boxes, scores, 0.6, max_out=100), args.repeats)
    t_ref = median_ms(lambda: reference_nms(boxes, scores, 0.6, max_out=100), 3)
    print(f"\ndecode + NMS + mapping to frame px, median ms ({os.cpu_count()} CPUs, numpy "
          f"{np.__version__}); NMS candidates = boxes above the score threshold")
    head = f"{'case':<52}{'cands':>6}{'kept':>6}{'steps':>6}{'vectorised':>12}{'plain loop':>12}{'speedup':>9}"
    print(head)
    print("-" * len(head))
    for name, cands, kept, steps, tf_, ts in rows:
        print(f"{name:<52}{cands:>6}{kept:>6}{steps:>6}{tf_:>12.2f}{ts:>12.1f}{ts / tf_:>8.0f}x")
    print(f"{'NMS alone, SSD frame 1, all 1,917 anchors':<52}{len(boxes):>6}{'':>6}{'':>6}{t_nms:>12.2f}"
          f"{t_ref:>12.1f}{t_ref / t_nms:>8.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of the vectorised decoder against a straightforward per-keypoint loop, for N = 1, 8, 32 people.

Run: python benchmarks/decode.py [--repeat 50]. Prints a table (median ms per call, speed-up over the loop, and
the cost in units of one argmax pass over the same maps, the floor any decoder pays) and, with --json, the same
figures as JSON. All three are timed interleaved, round by round. The loop reference below is written the obvious
way (one cv2 blur per map, Python branches and np.linalg.inv per keypoint) and is checked to give the same
keypoints before it is timed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import cv2
import numpy as np

from edge_pose.decode import decode_heatmaps

INPUT_SIZE = (256, 192)
HEATMAP = (64, 48)
K = 17


def synthetic_heatmaps(n: int, seed: int = 0) -> np.ndarray:
    """Gaussian peaks (sigma 2) at random sub-pixel spots plus a little noise, like a trained model's output."""
    rng = np.random.default_rng(seed)
    h, w = HEATMAP
    ys, xs = np.mgrid[0:h, 0:w]
    cx = rng.uniform(3, w - 4, (n, K, 1, 1))
    cy = rng.uniform(3, h - 4, (n, K, 1, 1))
    peak = rng.uniform(0.3, 1.0, (n, K, 1, 1))
    hm = peak * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0) + rng.normal(0, 0.01, (n, K, h, w))
    return hm.astype(np.float32)


def _blur(m: np.ndarray, kernel: int) -> np.ndarray:
    b = (kernel - 1) // 2
    padded = np.zeros((m.shape[0] + 2 * b, m.shape[1] + 2 * b), np.float32)
    padded[b:-b, b:-b] = m
    out = cv2.GaussianBlur(padded, (kernel, kernel), 0)[b:-b, b:-b]
    return out * (m.max() / out.max())


def loop_decode(heatmaps: np.ndarray, method: str, kernel: int = 11):
    """The reference: one person, one keypoint at a time."""
    n, k, h, w = heatmaps.shape
    kps = np.zeros((n, k, 2), np.float32)
    scores = np.zeros((n, k), np.float32)
    in_h, in_w = INPUT_SIZE
    for i in range(n):
        for j in range(k):
            m = heatmaps[i, j]
            idx = int(np.argmax(m))
            y, x = divmod(idx, w)
            score = float(m[y, x])
            px, py = (float(x), float(y)) if score > 0 else (-1.0, -1.0)
            if method == "msra":
                if score > 0:
                    if 1 < x < w - 1:
                        px += 0.25 * np.sign(m[y, x + 1] - m[y, x - 1])
                    if 1 < y < h - 1:
                        py += 0.25 * np.sign(m[y + 1, x] - m[y - 1, x])
                kps[i, j] = (px * in_w / w, py * in_h / h)
            elif method == "dark":
                if score > 0 and 1 < x < w - 2 and 1 < y < h - 2:
                    lm = np.log(np.maximum(_blur(m, kernel), 1e-10)).astype(np.float64)
                    g = np.array([lm[y, x + 1] - lm[y, x - 1], lm[y + 1, x] - lm[y - 1, x]]) * 0.5
                    dxx = 0.25 * (lm[y, x + 2] - 2 * lm[y, x] + lm[y, x - 2])
                    dyy = 0.25 * (lm[y + 2, x] - 2 * lm[y, x] + lm[y - 2, x])
                    dxy = 0.25 * (lm[y + 1, x + 1] - lm[y - 1, x + 1] - lm[y + 1, x - 1] + lm[y - 1, x - 1])
                    hess = np.array([[dxx, dxy], [dxy, dyy]])
                    if np.linalg.det(hess) != 0:
                        off = -np.linalg.inv(hess) @ g
                        px, py = px + off[0], py + off[1]
                kps[i, j] = (px * in_w / w, py * in_h / h)
            else:  # udp
                if score > 0:
                    lm = np.log(np.clip(_blur(m, kernel), 1e-3, 50)).astype(np.float64)
                    lm = np.pad(lm, 1, mode="edge")
                    cy_, cx_ = y + 1, x + 1
                    g = np.array([lm[cy_, cx_ + 1] - lm[cy_, cx_ - 1], lm[cy_ + 1, cx_] - lm[cy_ - 1, cx_]]) * 0.5
                    dxx = lm[cy_, cx_ + 1] - 2 * lm[cy_, cx_] + lm[cy_, cx_ - 1]
                    dyy = lm[cy_ + 1, cx_] - 2 * lm[cy_, cx_] + lm[cy_ - 1, cx_]
                    dxy = 0.5 * (lm[cy_ + 1, cx_ + 1] - lm[cy_, cx_ + 1] - lm[cy_ + 1, cx_] + 2 * lm[cy_, cx_]
                                 - lm[cy_, cx_ - 1] - lm[cy_ - 1, cx_] + lm[cy_ - 1, cx_ - 1])
                    hess = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
                    off = np.linalg.inv(hess) @ g
                    px, py = px - off[0], py - off[1]
                kps[i, j] = (px * in_w / (w - 1), py * in_h / (h - 1))
            scores[i, j] = score
    return kps, scores


def interleaved_medians(fns, repeats) -> list[float]:
    """Median ms of each function, timed in turn within every round so that load from other processes hits all
    alike; `repeats[i]` caps how many rounds function i takes part in (the slow loop takes part in fewer)."""
    for fn in fns:
        fn()  # warm-up (caches, lazily built tables)
    times = [[] for _ in fns]
    for i in range(max(repeats)):
        for fn, reps, ts in zip(fns, repeats, times):
            if i < reps:
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
    return [statistics.median(ts) * 1e3 for ts in times]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=50, help="timed calls per cell (median reported)")
    ap.add_argument("--people", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)
    rows = []
    for method in ("msra", "dark", "udp"):
        for n in args.people:
            hm = synthetic_heatmaps(n)
            vec_kp, vec_sc = decode_heatmaps(hm, method, INPUT_SIZE)
            ref_kp, ref_sc = loop_decode(hm, method)
            diff = float(np.abs(vec_kp - ref_kp).max())
            if diff > 1e-3 or not np.array_equal(vec_sc, ref_sc):
                raise SystemExit(f"{method} N={n}: vectorised and loop decoders disagree (max {diff:.2g} px)")
            flat = hm.reshape(n * K, -1)
            vec, floor, loop = interleaved_medians(
                [lambda: decode_heatmaps(hm, method, INPUT_SIZE), lambda: flat.argmax(axis=1),
                 lambda: loop_decode(hm, method)], [args.repeat, args.repeat, max(3, args.repeat // 4)])
            rows.append({"method": method, "people": n, "vectorised_ms": vec, "loop_ms": loop,
                         "speedup": loop / vec, "max_diff_px": diff, "argmax_ms": floor, "vs_argmax": vec / floor})
    print(f"decode {K} keypoints, heatmaps {HEATMAP[0]}x{HEATMAP[1]} (h x w), input {INPUT_SIZE[0]}x{INPUT_SIZE[1]}; "
          "speed-up = loop / vectorised, x argmax = vectorised / one argmax pass over the same maps")
    print(f"{'method':<6} {'N':>3} {'vectorised ms':>14} {'loop ms':>10} {'speed-up':>9} {'max diff px':>12} "
          f"{'argmax ms':>10} {'x argmax':>9}")
    for r in rows:
        print(f"{r['method']:<6} {r['people']:>3} {r['vectorised_ms']:>14.3f} {r['loop_ms']:>10.3f} "
              f"{r['speedup']:>8.1f}x {r['max_diff_px']:>12.2g} {r['argmax_ms']:>10.3f} {r['vs_argmax']:>8.1f}x")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

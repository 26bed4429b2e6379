"""edge-pose against the usual way of running a top-down ONNX pose model: same frames, same boxes, same threads.

    python benchmarks/vs_onnxruntime.py [--bundle DIR] [--threads 2] [--rounds 10] [--json out.json]

(a) onnxruntime on the source ONNX, written as rtmlib-style scripts do: per person a cv2.warpAffine crop,
    normalise, one session.run, then argmax + quarter-pixel offset per keypoint in Python, back to image pixels.
(b) edge-pose: PoseEstimator(bundle dir).predict(image, boxes=...) with the bundle it picks for this device.
Without --bundle the shared SimpleBaseline-family ONNX is converted once (`edge-pose convert`, TFLite int8 and fp32,
calibrated on coco-mini's detector boxes) into benchmarks/out/vs_onnxruntime/<onnx sha>/. The frames are coco-mini's
images with their detector boxes. Both sides get the same thread count (onnxruntime intra_op_num_threads) and are
timed interleaved frame by frame, alternating which goes first. Prints FPS of each, the ratio, and how well their
keypoints agree (mean px distance, OKS agreement with the COCO sigmas and the box area), as a table and JSON.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge_pose import PoseEstimator
from edge_pose.boxes import CocoBoxes
from edge_pose.bundle import resolve_bundles
from edge_pose.errors import EdgePoseError
from edge_pose.keypoints import coco17

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared"))
ONNX = SHARED / "models" / "simplebaseline-mbv2-ultralight" / "model.onnx"
DATA = SHARED / "data" / "coco-mini"
CACHE = ROOT / "benchmarks" / "out" / "vs_onnxruntime"
# the model's NOTICE: input "data" 1x3x256x192 NCHW, RGB / 255 then ImageNet mean / std
INPUT_HW = (256, 192)
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
CONVERT_FLAGS = ["--input-size", "256,192", "--layout", "NCHW", "--color", "rgb", "--mean", "123.675,116.28,103.53",
                 "--std", "58.395,57.12,57.375", "--keypoints", "coco17"]


# --- (a) the baseline, as a hand-written onnxruntime script does it -------------------------------------------

def onnx_session(path: Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("onnxruntime is not installed: pip install onnxruntime")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    if sess.get_providers() != ["CPUExecutionProvider"]:
        sys.exit(f"onnxruntime runs {sess.get_providers()}, expected the CPU provider only")
    return sess


def crop_affine(box_xywh, out_hw=INPUT_HW, padding=1.25):
    """Box -> centre, scale (w, h) with the model's aspect ratio, and the image -> crop affine (3-point form)."""
    x, y, w, h = box_xywh
    center = np.array([x + w / 2, y + h / 2], np.float32)
    sw, sh = w * padding, h * padding
    aspect = out_hw[1] / out_hw[0]
    sw, sh = (sw, sw / aspect) if sw > sh * aspect else (sh * aspect, sh)
    scale = np.array([sw, sh], np.float32)
    # centre, half a width up, and that point turned 90 degrees about it: in the image and in the crop
    src = np.array([center, center + [0, -sw / 2], center + [-sw / 2, -sw / 2]], np.float32)
    mid = np.array([out_hw[1] / 2, out_hw[0] / 2], np.float32)
    half = out_hw[1] / 2
    dst = np.array([mid, mid + [0, -half], mid + [-half, -half]], np.float32)
    return center, scale, cv2.getAffineTransform(src, dst)


def baseline(sess, image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One person at a time: crop, normalise, run, decode each keypoint -> keypoints [N, K, 2] image px, scores."""
    in_name = sess.get_inputs()[0].name
    kps, scores = [], []
    for box in boxes:
        center, scale, mat = crop_affine(box[:4])
        crop = cv2.warpAffine(image_bgr, mat, (INPUT_HW[1], INPUT_HW[0]), flags=cv2.INTER_LINEAR)
        x = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) - MEAN) / STD
        heatmaps = sess.run(None, {in_name: x.transpose(2, 0, 1)[None]})[0][0]
        k, h, w = heatmaps.shape
        person = np.zeros((k, 2), np.float32)
        person_scores = np.zeros(k, np.float32)
        for j in range(k):
            hm = heatmaps[j]
            py, px = divmod(int(hm.argmax()), w)
            score = float(hm[py, px])
            fx, fy = float(px), float(py)
            if score <= 0:
                fx = fy = -1.0
            else:  # a quarter pixel towards the higher neighbour (mmpose's bounds)
                if 1 < px < w - 1:
                    fx += 0.25 * np.sign(hm[py, px + 1] - hm[py, px - 1])
                if 1 < py < h - 1:
                    fy += 0.25 * np.sign(hm[py + 1, px] - hm[py - 1, px])
            crop_xy = np.array([fx * INPUT_HW[1] / w, fy * INPUT_HW[0] / h], np.float32)
            person[j] = crop_xy / [INPUT_HW[1], INPUT_HW[0]] * scale + center - scale / 2
            person_scores[j] = score
        kps.append(person)
        scores.append(person_scores)
    k = len(coco17().names)
    return np.array(kps, np.float32).reshape(-1, k, 2), np.array(scores, np.float32).reshape(-1, k)


# --- (b) edge-pose ----------------------------------------------------------------------------------------------

def edge_pose_call(est: PoseEstimator):
    def call(image_bgr, boxes):
        people = est.predict(image_bgr, boxes=boxes)
        k = len(est.keypoints.names)
        return (np.array([p.keypoints for p in people], np.float32).reshape(-1, k, 2),
                np.array([p.scores for p in people], np.float32).reshape(-1, k))
    return call


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_bundles(onnx: Path) -> Path:
    """Convert the ONNX once (TFLite int8 + fp32) into a cache dir named by its sha256; reuse it afterwards."""
    out = CACHE / sha256(onnx)[:16]
    if out.is_dir() and any(True for _ in out.glob("*/edge_pose.json")):
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".converting-", dir=CACHE))
    cmd = [str(Path(sys.executable).with_name("edge-pose")), "convert", str(onnx), *CONVERT_FLAGS,
           "--format", "tflite", "--precision", "int8", "--precision", "fp32",
           "--calib", str(DATA / "test_coco.json"), "--images", str(DATA),
           "--boxes", str(DATA / "test_coco_det_AP_H_56.json"), "--out", str(work)]
    print("converting once (about a minute):", " ".join(cmd), file=sys.stderr, flush=True)
    try:
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        work.rename(out)  # complete: only now does the cache dir exist
    except subprocess.CalledProcessError as exc:
        sys.exit(f"edge-pose convert {onnx} failed (exit {exc.returncode}); its messages are above")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


# --- measuring ------------------------------------------------------------------------------------------------

def load_frames(data: Path, boxes_json: Path, min_score: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    source = CocoBoxes(boxes_json, score_threshold=min_score)
    frames = []
    for path in sorted(data.glob("*.jpg")):
        image = cv2.imread(str(path))
        if image is None:
            sys.exit(f"{path}: not a readable image")
        boxes = source.boxes(image, path.name)
        if len(boxes):
            frames.append((path.name, image, boxes))
    if not frames:
        sys.exit(f"{boxes_json}: no person boxes with score >= {min_score} for the images in {data}")
    return frames


def agreement(a_kp, b_kp, boxes) -> dict:
    """Mean px distance and OKS of b's keypoints against a's (every joint, area = box w * h, COCO sigmas)."""
    d = np.linalg.norm(a_kp.astype(np.float64) - b_kp, axis=-1)
    k2 = (2.0 * np.asarray(coco17().sigmas)) ** 2
    area = (boxes[:, 2] * boxes[:, 3]).astype(np.float64)[:, None]
    oks = np.exp(-d ** 2 / (2.0 * area * k2)).mean(axis=1)
    return {"mean_px": float(d.mean()), "max_px": float(d.max()), "within_1px": float((d <= 1.0).mean()),
            "oks": float(oks.mean()), "oks_min": float(oks.min())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="bundle dir (or dir of bundles) instead of converting the ONNX")
    ap.add_argument("--onnx", type=Path, default=ONNX)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="for both sides (default: all cores)")
    ap.add_argument("--rounds", type=int, default=10, help="timed passes over all frames (median per frame)")
    ap.add_argument("--min-box-score", type=float, default=0.3, help="detector boxes at least this confident")
    ap.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = ap.parse_args(argv)
    for need in (args.onnx, DATA / "test_coco_det_AP_H_56.json"):
        if not need.exists():
            sys.exit(f"{need}: not found (set EDGE_POSE_SHARED to the shared/ folder)")
    bundle_dir = args.bundle or ensure_bundles(args.onnx)
    frames = load_frames(DATA, DATA / "test_coco_det_AP_H_56.json", args.min_box_score)

    sess = onnx_session(args.onnx, args.threads)
    try:
        est = PoseEstimator(bundle_dir, threads=args.threads)
    except EdgePoseError as exc:
        sys.exit(str(exc))  # names the file and what is wrong
    if est.flip or est.method != "msra":  # the baseline is msra without flip: compare like with like
        est = PoseEstimator(bundle_dir, threads=args.threads, flip=False, method="msra")
    sides = {"onnxruntime (per person)": lambda img, b: baseline(sess, img, b), "edge-pose": edge_pose_call(est)}
    chosen = est.loaded.chosen.bundle.manifest
    fp32 = [b for b in resolve_bundles(bundle_dir).bundles
            if b.manifest.precision == "fp32" and b.manifest.format == chosen.format and chosen.precision != "fp32"]
    if fp32:  # the same pipeline without quantisation: shows what the int8 model itself changes
        sides["edge-pose fp32"] = edge_pose_call(PoseEstimator(fp32[0].path, threads=args.threads, flip=False,
                                                               method="msra"))

    outputs = {name: [fn(img, boxes[:, :4]) for _, img, boxes in frames] for name, fn in sides.items()}  # warm-up
    times = {name: [] for name in sides}
    names = list(sides)
    for r in range(args.rounds):
        for _, img, boxes in frames:
            for name in (names if r % 2 == 0 else names[::-1]):
                t = time.perf_counter()
                sides[name](img, boxes[:, :4])
                times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)

    people = sum(len(b) for _, _, b in frames)
    base = names[0]
    all_boxes = np.concatenate([b[:, :4] for _, _, b in frames])
    ref = np.concatenate([kp for kp, _ in outputs[base]])
    rows = []
    for name in names:
        ms = statistics.median(times[name]) * 1e3
        mean_ms = statistics.fmean(times[name]) * 1e3
        row = {"side": name, "median_ms_per_frame": ms, "fps": 1e3 / mean_ms,
               "speedup": statistics.fmean(times[base]) / statistics.fmean(times[name])}
        if name != base:
            row["agreement_vs_onnxruntime"] = agreement(ref, np.concatenate([kp for kp, _ in outputs[name]]),
                                                        all_boxes)
        rows.append(row)
    described = est.describe()
    result = {"cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(), "threads": args.threads,
              "frames": len(frames), "people": people, "rounds": args.rounds, "min_box_score": args.min_box_score,
              "onnxruntime": __import__("onnxruntime").__version__, "edge_pose_runs": described,
              "bundle": f"{chosen.model.get('name')} {chosen.format}/{chosen.precision}", "rows": rows}

    print(f"{len(frames)} coco-mini frames, {people} people (detector boxes, score >= {args.min_box_score}), "
          f"{args.threads} threads, {result['cpu_model']}; edge-pose ran {described.get('backend')} "
          f"{chosen.format}/{chosen.precision} ({described.get('delegate', '-')})")
    print(f"{'side':<26} {'ms/frame':>9} {'FPS':>7} {'speed-up':>9} {'mean px':>8} {'max px':>7} {'<=1px':>6} "
          f"{'OKS':>6}")
    for row in rows:
        agree = row.get("agreement_vs_onnxruntime")
        tail = (f"{agree['mean_px']:>8.3f} {agree['max_px']:>7.2f} {agree['within_1px']:>6.1%} {agree['oks']:>6.4f}"
                if agree else f"{'(reference)':>8}")
        print(f"{row['side']:<26} {row['median_ms_per_frame']:>9.2f} {row['fps']:>7.1f} {row['speedup']:>8.2f}x {tail}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())

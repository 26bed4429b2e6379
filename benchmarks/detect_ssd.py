"""The shared SSDLite person detector at every stage of its road to the device: fidelity and latency.

    python benchmarks/detect_ssd.py [--rounds 15] [--threads 2] [--score 0.05] [--work DIR]

Variants: the original TF graph (its own pre- and postprocessing), the cut graph in TF with edge_pose.detect's
preprocessing + decoder + NMS, TFLite fp32 / int8 and OpenVINO FP32 / INT8 of the cut graph (int8 calibrated on
coco-mini's 4 frames and their mirror images, preprocessed as the Detector does). For each: person box AP, AP50
and recall at IoU 0.5 on coco-mini's ground truth (pycocotools bbox), agreement with the original graph's boxes,
and p50 latency per frame (whole detect: preprocess + inference + decode; inference alone beside it), all
variants interleaved frame by frame in one run so the numbers are comparable.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

SHARED = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared"))
PB = SHARED / "models" / "ssdlite-mobilenetv2-person" / "frozen_inference_graph.pb"
COCO = SHARED / "data" / "coco-mini"


def say(msg: str) -> None:
    print(msg, flush=True)


class Original:
    """The untouched graph as a detect(image) callable, boxes above the score threshold in image px."""

    def __init__(self, threads, score):
        from converters.detect.ssd_tfod import OriginalGraph

        self.g, self.score, self.last_timings = OriginalGraph(PB, threads), score, {}

    def detect(self, bgr):
        t = time.perf_counter()
        o = self.g.run(np.ascontiguousarray(bgr[:, :, ::-1]))
        dt = (time.perf_counter() - t) * 1e3
        self.last_timings = {"total_ms": dt, "infer_ms": dt}
        h, w = bgr.shape[:2]
        n = int(o["num_detections"][0])
        b, s = o["detection_boxes"][0][:n], o["detection_scores"][0][:n]
        out = np.stack([b[:, 1] * w, b[:, 0] * h, (b[:, 3] - b[:, 1]) * w, (b[:, 2] - b[:, 0]) * h, s], 1)
        return out[s > self.score].astype(np.float32)


def build(work: Path, threads: int, score: float):
    from converters.detect.export import calibration_inputs, export_openvino, export_tflite
    from converters.detect.sessions import LiteRTSession, OpenVINOSession
    from converters.detect.ssd_tfod import BOXES, CLASSES, CutSession, cut_ssd
    from edge_pose.detect.detector import Detector

    say("cutting the graph, evaluating its anchors")
    cut = cut_ssd(PB)
    spec = cut.spec(score_threshold=score)
    frames = [cv2.imread(str(p)) for p in sorted(COCO.glob("*.jpg"))]
    calib = calibration_inputs(frames, spec)
    made = {}
    for prec in ("fp32", "int8"):
        f = work / f"ssd-{prec}.tflite"
        if not f.exists():
            say(f"converting TFLite {prec}")
            export_tflite(cut, prec, f, calib)
        d = work / f"ov-{prec}"
        if not (d / "model.xml").exists():
            say(f"converting OpenVINO {prec}")
            export_openvino(cut, prec, d, calib)
        made[prec] = (f, d / "model.xml")
    outs = [BOXES, CLASSES]
    return {
        "TF original graph": Original(threads, score),
        "TF cut + edge_pose.detect": Detector(CutSession(cut, threads), spec),
        "TFLite fp32": Detector(LiteRTSession(made["fp32"][0], outs, threads), spec),
        "TFLite int8": Detector(LiteRTSession(made["int8"][0], outs, threads), spec),
        "OpenVINO FP32": Detector(OpenVINOSession(made["fp32"][1], outs, threads), spec),
        "OpenVINO INT8": Detector(OpenVINOSession(made["int8"][1], outs, threads), spec),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="timed passes over the 4 frames per variant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--score", type=float, default=0.05)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "detect_ssd")
    args = ap.parse_args()
    from calibration.detect_fidelity import box_agreement, load_gt, person_box_ap, run_on_images

    args.work.mkdir(parents=True, exist_ok=True)
    variants = build(args.work, args.threads, args.score)
    gt = load_gt(COCO / "test_coco.json")
    say("evaluating")
    dets = {name: run_on_images(v.detect, gt, COCO) for name, v in variants.items()}
    frames = [cv2.imread(str(COCO / im["file_name"])) for im in gt["images"]]
    total = {n: [] for n in variants}
    infer = {n: [] for n in variants}
    for v in variants.values():  # warm-up
        v.detect(frames[0])
    for r in range(args.rounds):
        if r % 5 == 0:
            say(f"timing round {r + 1}/{args.rounds}")
        for f in frames:
            for name, v in variants.items():  # interleaved: every variant sees the same load
                v.detect(f)
                total[name].append(v.last_timings["total_ms"])
                infer[name].append(v.last_timings["infer_ms"])
    ref = dets["TF original graph"]
    say(f"\nSSDLite MobileNetV2 person detector, coco-mini ({len(gt['images'])} images, "
        f"{sum(1 for a in gt['annotations'] if not a.get('iscrowd'))} people), score > {args.score}, "
        f"{args.threads} threads, {os.cpu_count()} CPUs, {len(total['TFLite fp32'])} timed frames each")
    head = (f"{'variant':<28}{'AP':>6}{'AP50':>7}{'rec50':>7}{'boxes':>7}{'IoU vs TF':>10}{'matched':>9}"
            f"{'p50 ms':>8}{'infer':>7}{'x fp32':>8}")
    say(head)
    say("-" * len(head))
    base = float(np.median(total["TFLite fp32"]))
    for name in variants:
        m = person_box_ap(gt, dets[name])
        agree = box_agreement(ref, dets[name], min_score=0.3)
        p50 = float(np.median(total[name]))
        say(f"{name:<28}{m['AP']:>6.1f}{m['AP50']:>7.1f}{m['recall50']:>7.1f}{m['detections']:>7d}"
            f"{agree['mean_best_iou']:>10.3f}{agree['matched_fraction']:>9.2f}{p50:>8.1f}"
            f"{float(np.median(infer[name])):>7.1f}{base / p50:>8.2f}")
    say("\nIoU vs TF / matched: the original graph's boxes with score >= 0.3, best IoU with this variant's (mean) "
        "and share matched at IoU >= 0.5. x fp32: TFLite fp32's p50 over this one's (above 1: faster).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

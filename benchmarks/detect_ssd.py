"""The shared SSDLite person detector at every stage of its road to the device: fidelity and latency.

    python benchmarks/detect_ssd.py [--rounds 40] [--threads 2] [--score 0.05] [--work DIR]

Variants: the original TF graph (its own pre- and postprocessing), the cut graph in TF with edge_pose.detect's
preprocessing + decoder + NMS, TFLite fp32 / int8 and OpenVINO FP32 / INT8 of the cut graph (int8 calibrated on
coco-mini's 4 frames and their mirror images, preprocessed as the Detector does, so its AP here is in-sample: the
out-of-fold figures that judge int8 are `edge-pose convert --task detect`'s; OpenVINO compiled with
INFERENCE_PRECISION_HINT f32). For each: person box AP, AP50 and recall at IoU 0.5 on coco-mini's ground truth
(pycocotools bbox), agreement with the original graph's boxes, and p50 latency per frame (whole detect: preprocess
+ inference + decode; inference alone beside it).

Each device runtime is timed in a child process of its own, without TensorFlow, as on a device: measured here, a
loaded TensorFlow in the same process slows OpenVINO INT8 from 4.0 to 11.8 ms (their thread pools compete), which
would charge TF's presence to OpenVINO. Within each process the variants are interleaved round by round (each
round, per variant: one untimed frame, then the 4 frames timed), so fp32 and int8 of one runtime are comparable.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
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
OUTPUTS = ["raw_outputs/box_encodings", "raw_outputs/class_predictions"]  # converters.detect.ssd_tfod's names


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


def measure(variants: dict, rounds: int) -> dict:
    """Detections on coco-mini and interleaved timings: {name: {"dets": {id: boxes}, "total": [..], "infer": [..]}}."""
    from calibration.detect_fidelity import load_gt, run_on_images

    gt = load_gt(COCO / "test_coco.json")
    res = {name: {"dets": run_on_images(v.detect, gt, COCO), "total": [], "infer": []} for name, v in variants.items()}
    frames = [cv2.imread(str(COCO / im["file_name"])) for im in gt["images"]]
    for r in range(rounds):
        if r % 10 == 0:
            say(f"timing round {r + 1}/{rounds}")
        for name, v in variants.items():
            # one untimed frame first: the runtime that ran before may still hold the cores (worker threads spin
            # a while after their last op), which would be charged to this one
            v.detect(frames[-1])
            for f in frames:
                v.detect(f)
                res[name]["total"].append(v.last_timings["total_ms"])
                res[name]["infer"].append(v.last_timings["infer_ms"])
    return res


def device_child(work: Path, runtime: str, threads: int, rounds: int) -> int:
    """One runtime's fp32 and int8 models, in a process that never imports TensorFlow (nor the other runtime)."""
    from converters.detect.sessions import LiteRTSession, OpenVINOSession
    from edge_pose.detect.detector import Detector

    spec = json.loads((work / "spec.json").read_text())
    spec["anchors"] = np.load(work / "anchors.npy")
    if runtime == "tflite":
        variants = {
            "TFLite fp32": Detector(LiteRTSession(work / "ssd-fp32.tflite", OUTPUTS, threads), spec),
            "TFLite int8": Detector(LiteRTSession(work / "ssd-int8.tflite", OUTPUTS, threads), spec)}
    else:
        variants = {
            "OpenVINO FP32": Detector(OpenVINOSession(work / "ov-fp32" / "model.xml", OUTPUTS, threads), spec),
            "OpenVINO INT8": Detector(OpenVINOSession(work / "ov-int8" / "model.xml", OUTPUTS, threads), spec)}
    assert "tensorflow" not in sys.modules
    res = measure(variants, rounds)
    out = {n: {"dets": {str(i): b.tolist() for i, b in r["dets"].items()}, "total": r["total"], "infer": r["infer"]}
           for n, r in res.items()}
    (work / f"device-{runtime}.json").write_text(json.dumps(out))
    return 0


def build(work: Path, threads: int, score: float):
    from converters.detect.export import calibration_inputs, export_openvino, export_tflite
    from converters.detect.ssd_tfod import CutSession, cut_ssd
    from edge_pose.detect.detector import Detector

    say("cutting the graph, evaluating its anchors")
    cut = cut_ssd(PB)
    spec = cut.spec(score_threshold=score)
    frames = [cv2.imread(str(p)) for p in sorted(COCO.glob("*.jpg"))]
    calib = calibration_inputs(frames, spec)
    for prec in ("fp32", "int8"):
        f = work / f"ssd-{prec}.tflite"
        if not f.exists():
            say(f"converting TFLite {prec}")
            export_tflite(cut, prec, f, calib)
        d = work / f"ov-{prec}"
        if not (d / "model.xml").exists():
            say(f"converting OpenVINO {prec}")
            export_openvino(cut, prec, d, calib)
    np.save(work / "anchors.npy", spec["anchors"])
    (work / "spec.json").write_text(json.dumps({k: v for k, v in spec.items() if k != "anchors"}))
    return {"TF original graph": Original(threads, score),
            "TF cut + edge_pose.detect": Detector(CutSession(cut, threads), spec)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40, help="timed passes over the 4 frames per variant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--score", type=float, default=0.05)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "detect_ssd")
    ap.add_argument("--device-child", choices=("tflite", "openvino"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.device_child:
        return device_child(args.work, args.device_child, args.threads, args.rounds)
    from calibration.detect_fidelity import box_agreement, load_gt, person_box_ap

    variants = build(args.work, args.threads, args.score)
    say("TF variants: evaluating and timing")
    res = measure(variants, args.rounds)
    del variants
    for runtime in ("tflite", "openvino"):
        say(f"{runtime}: evaluating and timing in a child process without TensorFlow")
        subprocess.run([sys.executable, __file__, "--device-child", runtime, "--work", str(args.work), "--threads",
                        str(args.threads), "--rounds", str(args.rounds)], check=True)
        for name, r in json.loads((args.work / f"device-{runtime}.json").read_text()).items():
            res[name] = {"dets": {int(i): np.asarray(b, np.float32).reshape(-1, 5) for i, b in r["dets"].items()},
                         "total": r["total"], "infer": r["infer"]}
    gt = load_gt(COCO / "test_coco.json")
    ref = res["TF original graph"]["dets"]
    say(f"\nSSDLite MobileNetV2 person detector, coco-mini ({len(gt['images'])} images, "
        f"{sum(1 for a in gt['annotations'] if not a.get('iscrowd'))} people), score > {args.score}, "
        f"{args.threads} threads, {os.cpu_count()} CPUs, {len(res['TFLite fp32']['total'])} timed frames each")
    head = (f"{'variant':<28}{'AP':>6}{'AP50':>7}{'rec50':>7}{'boxes':>7}{'IoU vs TF':>10}{'matched':>9}"
            f"{'p50 ms':>8}{'infer':>7}{'x fp32':>8}")
    say(head)
    say("-" * len(head))
    for name, r in res.items():
        m = person_box_ap(gt, r["dets"])
        agree = box_agreement(ref, r["dets"], min_score=0.3)
        p50 = float(np.median(r["total"]))
        base = "TFLite fp32" if name.startswith("TFLite") else "OpenVINO FP32" if name.startswith("OpenVINO") \
            else "TF original graph"
        ratio = float(np.median(res[base]["total"])) / p50
        say(f"{name:<28}{m['AP']:>6.1f}{m['AP50']:>7.1f}{m['recall50']:>7.1f}{m['detections']:>7d}"
            f"{agree['mean_best_iou']:>10.3f}{agree['matched_fraction']:>9.2f}{p50:>8.1f}"
            f"{float(np.median(r['infer'])):>7.1f}{ratio:>8.2f}")
    say("\nIoU vs TF / matched: the original graph's boxes with score >= 0.3, best IoU with this variant's (mean) "
        "and share matched at IoU >= 0.5. x fp32: the same format's float p50 over this one's (TF rows: the original "
        "graph's), above 1 faster. TF, TFLite and OpenVINO rows come from three processes (see the docstring).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

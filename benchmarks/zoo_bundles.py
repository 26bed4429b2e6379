"""The bundles the benchmarks measure: Lite-HRNet-18 and SimpleBaseline-R50 (seeded weights), TFLite and OpenVINO,
fp32 / fp16 / int8, calibrated on real COCO crops. Made once with `edge-pose convert`, then reused. Latency does
not depend on the weights, so an int8 that misses the fidelity guard on seeded weights is kept (--allow-degraded,
marked in its manifest).

    python benchmarks/zoo_bundles.py [OUT]
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "bundles"
MODELS = ("litehrnet-18", "simplebaseline-r50")
PRECISIONS = ("fp32", "fp16", "int8")


def coco_mini() -> Path:
    path = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared")) / "data" / "coco-mini"
    if not (path / "test_coco.json").is_file():
        sys.exit(f"benchmarks need real calibration images: {path} not found (set EDGE_POSE_SHARED)")
    return path


def ensure_zoo_bundles(out: Path = DEFAULT_OUT) -> Path:
    data = coco_mini()
    exe = Path(sys.executable).with_name("edge-pose")
    for model in MODELS:
        want = [out / f"{model}-{fmt}-{p}" for fmt in ("tflite", "openvino") for p in PRECISIONS]
        if all((w / "edge_pose.json").is_file() for w in want):
            continue
        cmd = [str(exe), "convert", model, "--format", "tflite", "--format", "openvino",
               *[a for p in PRECISIONS for a in ("--precision", p)],
               "--calib", str(data / "test_coco.json"), "--boxes", str(data / "test_coco_det_AP_H_56.json"),
               "--calib-size", "64", "--allow-degraded", "--out", str(out)]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    return out


if __name__ == "__main__":
    print(ensure_zoo_bundles(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))

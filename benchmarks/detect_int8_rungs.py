"""Every int8 rung of the SSD detector's ladder as a bundle: its out-of-fold box AP and its latency beside fp32.

    python benchmarks/detect_int8_rungs.py [--runs 200] [--threads 2] [--format tflite] [--work DIR]

Each rung of converters.detect.ladder.LADDER is built by `convert_detector` alone (so judged as convert judges it:
cross-calibration on coco-mini, 4 folds, the bundle calibrated on all frames by that recipe), next to the fp32
bundles. Then ONE `edge-pose bench` run times them all, interleaved, in a child process without TensorFlow (a
loaded TensorFlow slows OpenVINO: see detect_ssd.py). The table gives box AP (out of fold) and inference p50 with
its ratio to the format's fp32 and to the format's first (all-int8) rung: the latency a float island costs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared"))
PB = SHARED / "models" / "ssdlite-mobilenetv2-person" / "frozen_inference_graph.pb"
COCO = SHARED / "data" / "coco-mini" / "test_coco.json"


def say(msg: str) -> None:
    print(msg, flush=True)


def build(work: Path, formats: list[str]) -> dict[str, dict]:
    """Bundles in work/bench/<name>: {name: {format, rung, label, AP, ap_drop}}."""
    from converters.detect.convert import convert_detector
    from converters.detect.ladder import LADDER

    bench, rows = work / "bench", {}
    quiet = (lambda m: None)
    for c in convert_detector(PB, work / "fp32", formats=formats, precisions=["fp32"], calib=COCO, log=quiet):
        name = f"{c.bundle.manifest.format}-fp32"
        shutil.copytree(c.bundle.path, bench / name)
        rows[name] = {"format": c.bundle.manifest.format, "rung": "-", "label": "fp32", **c.figures}
    for fmt in formats:
        for i, rung in enumerate(LADDER[fmt]):
            say(f"building {fmt} int8 rung {i}: {rung[0]}")
            out = work / f"{fmt}-rung{i}"
            (c,) = convert_detector(PB, out, formats=[fmt], precisions=["int8"], calib=COCO, allow_degraded=True,
                                    ladder={fmt: [rung]}, log=quiet)
            name = f"{fmt}-int8-rung{i}"
            shutil.copytree(c.bundle.path, bench / name)
            rows[name] = {"format": fmt, "rung": i, "label": rung[0], **c.figures}
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--format", dest="formats", action="append", choices=("tflite", "openvino"))
    ap.add_argument("--work", type=Path, help="keep the bundles here (default: a temporary folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="detect-int8-rungs-"))
    if (work / "bench").exists():
        shutil.rmtree(work / "bench")
    rows = build(work, args.formats or ["tflite", "openvino"])
    say(f"timing {len(rows)} bundles in one interleaved `edge-pose bench` run ({args.runs} runs, "
        f"{args.threads} threads)")
    result = work / "bench.json"
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "edge-pose"), "bench", str(work / "bench"), "--threads",
                        str(args.threads), "--runs", str(args.runs), "--allow-degraded", "--device", "generic-x86-64",
                        "--json", str(result)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True)
    if r.returncode != 0:
        say(f"edge-pose bench failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        return 1
    p50 = {Path(x["bundle"]).name: x["latency"]["p50_ms"] for x in json.loads(result.read_text())["results"]}
    say(f"\n{'bundle':<22} {'mitigation':<62} {'AP':>5} {'vs src':>7} {'p50 ms':>7} {'/fp32':>6} {'/rung0':>7}")
    for name, row in rows.items():
        fp32 = p50.get(f"{row['format']}-fp32")
        first = p50.get(f"{row['format']}-int8-rung0")
        ms = p50.get(name, float("nan"))
        say(f"{name:<22} {row['label']:<62} {row['AP']:>5.1f} {-row['ap_drop']:>+7.2f} {ms:>7.2f} "
            f"{ms / fp32 if fp32 else float('nan'):>6.2f} "
            f"{(ms / first) if first and row['rung'] != '-' else float('nan'):>7.2f}")
    say(f"\nbundles and bench results: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

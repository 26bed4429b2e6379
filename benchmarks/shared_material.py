"""What the benchmarks share: where ../shared is, the shared SimpleBaseline-family model's facts, and a conversion
run once into benchmarks/out (a later run reuses the bundles)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MINI = SHARED / "data" / "coco-mini"
SB_ONNX = SHARED / "models" / "simplebaseline-mbv2-ultralight" / "model.onnx"
SSD_PB = SHARED / "models" / "ssdlite-mobilenetv2-person" / "frozen_inference_graph.pb"
SB = ["--color", "rgb", "--mean", "123.675,116.28,103.53", "--std", "58.395,57.12,57.375", "--keypoints", "coco17"]


def convert_once(args: list[str], out: Path) -> Path:
    """`edge-pose convert ARGS --out OUT` unless OUT already holds its bundles."""
    if out.is_dir() and any(out.iterdir()):
        return out
    cmd = [str(ROOT / ".venv/bin/edge-pose"), "convert", *args, "--out", str(out)]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out

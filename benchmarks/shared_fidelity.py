"""Fidelity and latency of the two shared real models at every precision: the figures docs/convert.md quotes.

Each model goes through `edge-pose convert` to every TFLite and OpenVINO precision, calibrated on coco-mini's
detector boxes and judged on its ground-truth crops (never used for calibration); an int8 the guard cannot rescue
is kept with --allow-degraded so its figures show. Then `edge-pose bench` times every bundle on this machine.

    python benchmarks/shared_fidelity.py [--runs 30] [--threads 2]

Prints one table (fidelity + p50 latency + ratio to fp32 of the same format) and leaves JSON and markdown in
benchmarks/out/shared-fidelity/.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_bundles import ROOT, coco_mini  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "shared-fidelity"
SHARED = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared"))
MODELS = {
    "simplebaseline-mbv2-ultralight": ("model.onnx", ["--color", "rgb", "--mean", "123.675,116.28,103.53",
                                                      "--std", "58.395,57.12,57.375", "--keypoints", "coco17"]),
    "cpm-mbv2-aic14": ("model.pb", ["--color", "bgr", "--mean", "0,0,0", "--std", "1,1,1", "--keypoints", "aic14"]),
}
TARGETS = {"tflite": ("fp32", "fp16", "dynamic", "int8", "int16x8"), "openvino": ("fp32", "fp16", "int8")}
COLUMNS = ("bundle", "mitigation", "heatmap_max_rel_diff", "keypoint_error_px", "oks_agreement", "ap_reference",
           "ap_candidate", "ap_drop", "passed", "p50_ms", "vs_fp32")


def convert(model: str, fmt: str, out: Path) -> list[dict]:
    file, facts = MODELS[model]
    data = coco_mini()
    cmd = [str(Path(sys.executable).with_name("edge-pose")), "convert", str(SHARED / "models" / model / file),
           *facts, "--format", fmt, *[a for p in TARGETS[fmt] for a in ("--precision", p)],
           "--calib", str(data / "test_coco.json"), "--boxes", str(data / "test_coco_det_AP_H_56.json"),
           "--allow-degraded", "--json", "--out", str(out)]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    return json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)


def bench(paths: list[str], backend: str, runs: int, threads: str) -> dict[str, float]:
    """p50 ms per bundle name; the backend is named so precisions a profile would not pick (16x8) are timed too."""
    result = OUT / f"bench-{backend}.json"
    subprocess.run([str(Path(sys.executable).with_name("edge-pose")), "bench", *paths, "--backend", backend,
                    "--threads", threads, "--runs", str(runs), "--json", str(result)], check=True, stdout=sys.stderr)
    rows = json.loads(result.read_text())["results"]
    return {Path(r["bundle"]).name: r["latency"]["p50_ms"] for r in rows if r.get("latency")}


def fmt_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 0.01 else f"{v:.3f}"
    return "" if v is None else str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--table-only", action="store_true", help="reprint the table of the last run")
    args = ap.parse_args()
    if args.table_only:
        return table(json.loads((OUT / "results.json").read_text()))
    rows = [row for model in MODELS for fmt in TARGETS for row in convert(model, fmt, OUT / "bundles")]
    p50 = {}
    for fmt, backend in (("tflite", "litert"), ("openvino", "openvino")):
        p50.update(bench([r["path"] for r in rows if f"-{fmt}-" in Path(r["path"]).name], backend, args.runs,
                         args.threads))
    for r in rows:
        name = Path(r["path"]).name
        r["bundle"], r["p50_ms"] = name, p50.get(name)
        base = p50.get(name.rsplit("-", 1)[0] + "-fp32")
        r["vs_fp32"] = round(base / r["p50_ms"], 2) if base and r["p50_ms"] else None
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    return table(rows)


def table(rows: list[dict]) -> int:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt_cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\n(vs_fp32: fp32 p50 / this p50, same format; written to {OUT})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

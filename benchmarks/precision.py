"""int8 and fp16 against fp32, per backend, on this machine: `edge-pose bench` on the zoo bundles, then the report.

    python benchmarks/precision.py [--runs 100] [--threads 2]

Prints the latency table and the speedup-over-fp32 table, and leaves JSON, markdown and PNG charts in
benchmarks/out/precision/.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_bundles import DEFAULT_OUT, ensure_zoo_bundles  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", default="2")
    args = ap.parse_args()
    bundles = ensure_zoo_bundles(DEFAULT_OUT)
    out = DEFAULT_OUT.parent / "precision"
    exe = str(Path(sys.executable).with_name("edge-pose"))
    subprocess.run([exe, "bench", str(bundles), "--threads", args.threads, "--runs", str(args.runs),
                    "--warmup", "10", "--json", str(out / "results.json")], check=True)
    subprocess.run([exe, "bench", "report", str(out / "results.json"), "--out", str(out / "report")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""edge_pose's inference call against the raw runtime call on the same model: the price of the adapter.

    python benchmarks/overhead.py [BUNDLE_OR_DIR ...] [--runs 200] [--threads 2]

For every bundle: the raw call (LiteRT: set_tensor / invoke / get_tensor; OpenVINO: infer_request.infer on the same
compiled settings) and edge_pose's session.infer (which also checks, transposes to NCHW and dequantises) are timed
interleaved, one call each in turn, and the table shows p50 of both and their ratio. Without arguments it uses the
bundles made by benchmarks/zoo_bundles.py (Lite-HRNet-18 and SimpleBaseline-R50, fp32/fp16/int8, LiteRT/OpenVINO).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_bundles import DEFAULT_OUT, ensure_zoo_bundles  # noqa: E402

from edge_pose.bench.runner import sample_input  # noqa: E402
from edge_pose.bundle import resolve_bundles  # noqa: E402
from edge_pose.select import open_best  # noqa: E402


def raw_call(bundle, threads: int):
    """The plain runtime API on the bundle's model file, as a user would write it by hand."""
    if bundle.manifest.format == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(bundle.model_path), num_threads=threads)
        interp.allocate_tensors()
        i, o = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

        def call(x):
            interp.set_tensor(i, x)
            interp.invoke()
            return interp.get_tensor(o)
        return call
    import openvino as ov

    compiled = ov.Core().compile_model(str(bundle.model_path), "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def call(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data
    return call


def measure(bundle, threads: int, runs: int) -> tuple[float, float]:
    session = open_best(bundle.path, backend="litert" if bundle.manifest.format == "tflite" else "openvino",
                        accelerator="xnnpack" if bundle.manifest.format == "tflite" else "CPU",
                        threads=threads).session
    raw = raw_call(bundle, threads)
    x = sample_input(bundle)
    for _ in range(10):
        raw(x), session.infer(x)
    t_raw, t_ep = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        raw(x)
        t1 = time.perf_counter()
        session.infer(x)
        t2 = time.perf_counter()
        t_raw.append(t1 - t0)
        t_ep.append(t2 - t1)
    return float(np.median(t_raw) * 1e3), float(np.median(t_ep) * 1e3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    paths = args.paths or [str(ensure_zoo_bundles(DEFAULT_OUT))]
    bundles = [b for p in paths for b in resolve_bundles(p).bundles]
    print(f"{'bundle':<44} {'raw p50 ms':>11} {'edge_pose p50 ms':>17} {'ratio':>7}")
    for b in bundles:
        raw, ep = measure(b, args.threads, args.runs)
        print(f"{b.path.name:<44} {raw:>11.3f} {ep:>17.3f} {ep / raw:>7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

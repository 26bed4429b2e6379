"""OpenVINO against LiteRT on this CPU: Lite-HRNet-18/-30, fp32 and int8, at the same thread counts.

    python benchmarks/openvino_vs_litert.py [--depths 18,30] [--threads 1,2] [--runs 40] [--burst 5]
        [--repeat 3] [--processes] [--out DIR] [--also BUNDLE ...] [--profile]

Bundles come from `edge-pose convert litehrnet-D --format tflite --format openvino --precision fp32 --precision
int8` (seeded weights: timing only; int8 calibrated on coco-mini's detector boxes, kept even where the guard
judges it degraded), each depth converted once into OUT (default benchmarks/out/openvino_vs_litert) in a
`nice -n 10` subprocess, so each target is built from the graph form its zoo entry names (OpenVINO: the
converters.models.litehrnet_openvino graph). Timing runs in this process without TensorFlow: per depth and thread
count, every bundle of that depth interleaved (turn after turn, `--burst` inferences per turn; a short idle before
each turn so one session's worker threads are asleep before the next runs), `--repeat` times; the table gives the
p50 of each run (a range over the runs) and the ratios OpenVINO/LiteRT and int8/fp32 measured within one run.
`--processes` times each bundle alone in its own process instead, the bundles one after the other, every run:
at 2 threads on 2 cores the two runtimes' worker threads slow each other when they share a process.
`--burst 1` times every inference right after another model's: OpenVINO loses more than LiteRT to the cold caches
(Lite-HRNet-18 fp32 at one thread measured 0.82-0.86x LiteRT's p50 in bursts, about 1.0x switching every inference).
`--also` adds bundles (e.g. an OpenVINO bundle from the default graph) to every run of their depth.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared"))
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "openvino_vs_litert"
TARGETS = [(fmt, p) for fmt in ("tflite", "openvino") for p in ("fp32", "int8")]
RUNTIME = {"tflite": "LiteRT", "openvino": "OpenVINO"}


def bundle_dir(out: Path, depth: int, fmt: str, precision: str) -> Path:
    return out / f"litehrnet-{depth}" / f"litehrnet-{depth}-{fmt}-{precision}"


def ensure(out: Path, depth: int) -> None:
    """Convert litehrnet-<depth> to the four targets unless all are there."""
    if all((bundle_dir(out, depth, f, p) / "edge_pose.json").is_file() for f, p in TARGETS):
        return
    data = SHARED / "data" / "coco-mini"
    if not (data / "test_coco.json").is_file():
        sys.exit(f"needs coco-mini to calibrate int8: {data} not found (set EDGE_POSE_SHARED)")
    cmd = ["nice", "-n", "10", sys.executable, "-m", "edge_pose.cli.main", "convert", f"litehrnet-{depth}",
           "--format", "tflite", "--format", "openvino", "--precision", "fp32", "--precision", "int8",
           "--calib", str(data / "test_coco.json"), "--boxes", str(data / "test_coco_det_AP_H_56.json"),
           "--images", str(data), "--allow-degraded", "--out", str(out / f"litehrnet-{depth}")]
    print(f"converting Lite-HRNet-{depth} (4 bundles, a few minutes) ...", file=sys.stderr, flush=True)
    started = time.time()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    print(f"  {time.time() - started:.0f} s", file=sys.stderr, flush=True)


def _open(path: Path, threads: int):
    from edge_pose.backends.litert import LiteRTBackend
    from edge_pose.backends.openvino import OpenVINOBackend
    from edge_pose.bench.runner import sample_input
    from edge_pose.bundle import load_bundle

    bundle = load_bundle(path)
    if bundle.manifest.format == "tflite":
        session = LiteRTBackend().load(bundle, "cpu", {"threads": threads})
    else:  # compiled at the bundle's execution precision (f32 for fp32 and int8), read back by the backend
        session = OpenVINOBackend().load(bundle, "CPU", {"threads": threads, "cache_dir": False})
    return session, sample_input(bundle)


def time_interleaved(paths: list[Path], threads: int, runs: int, pause_ms: float, burst: int, warmup: int = 10
                     ) -> dict[Path, float]:
    """p50 (ms) per bundle over `runs` rounds; in each round every bundle in turn runs `burst` inferences, the
    first untimed when burst > 1 (the model's weights and buffers back in cache: a model running frame after
    frame); burst 1 times each inference right after another model's (cold caches: a model alternating with a
    detector). `pause_ms` idle before each bundle's turn: the worker threads a session leaves spinning
    (XNNPACK's pthreadpool, OpenVINO's executor) would slow the next."""
    import numpy as np

    loaded = [(p, *_open(p, threads)) for p in paths]
    time.sleep(1.0)  # OpenVINO's compile leaves threads busy for a few hundred ms (LiteRT ran 2x slower meanwhile)
    for _, session, x in loaded:
        for _ in range(warmup):
            session.infer(x)
    times: dict[Path, list[float]] = {p: [] for p in paths}
    for _ in range(runs):
        for p, session, x in loaded:
            time.sleep(pause_ms / 1e3)
            for k in range(burst):
                start = time.perf_counter()
                session.infer(x)
                if k or burst == 1:
                    times[p].append((time.perf_counter() - start) * 1e3)
    return {p: float(np.median(t)) for p, t in times.items()}


def time_in_processes(paths: list[Path], threads: int, runs: int, pause_ms: float, burst: int) -> dict[Path, float]:
    """p50 (ms) per bundle, each timed alone in a fresh process, one after the other: no other runtime's worker
    threads in the process. In one process, at 2 threads on 2 cores, OpenVINO's TBB workers and XNNPACK's
    pthreadpool slowed each other (LiteRT Lite-HRNet-18 fp32 measured 8 ms next to an OpenVINO session, 4 ms
    alone)."""
    out = {}
    for p in paths:
        cmd = [sys.executable, __file__, "--time-one", str(p), "--threads", str(threads), "--runs", str(runs),
               "--pause-ms", str(pause_ms), "--burst", str(burst)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ,
                                                                                     "PYTHONPATH": str(ROOT)})
        out[p] = float(done.stdout.split()[-1])
    return out


def _span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def _depth_of(path: Path) -> int | None:
    name = json.loads((path / "edge_pose.json").read_text())["model"]["name"]
    return int(name.rsplit("-", 1)[1]) if name.startswith("litehrnet-") else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="18,30")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=40, help="turns per bundle and run")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs per depth and thread count")
    ap.add_argument("--pause-ms", type=float, default=5.0, help="idle time before each bundle's turn")
    ap.add_argument("--burst", type=int, default=5, help="inferences per bundle's turn, the first untimed (1: every "
                                                         "inference right after another model's, caches cold)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--also", type=Path, nargs="*", default=[], help="more Lite-HRNet bundles to time alongside")
    ap.add_argument("--processes", action="store_true", help="time each bundle alone in its own process, one after "
                                                             "the other (no other runtime's threads beside it)")
    ap.add_argument("--profile", action="store_true", help="also print where each OpenVINO fp32 bundle's time goes")
    ap.add_argument("--time-one", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time_one:
        print(time_interleaved([args.time_one], int(args.threads), args.runs, args.pause_ms, args.burst)[args.time_one])
        return 0
    depths = [int(d) for d in args.depths.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    for depth in depths:
        ensure(args.out, depth)
    from edge_pose.bench.environment import collect

    env = collect()
    turn = (f"{args.burst} inferences per turn, the first untimed" if args.burst > 1 else
            "1 inference per turn (caches cold from the previous model)")
    where = "each bundle alone in its own process, one after the other" if args.processes else "bundles interleaved"
    print(f"CPU: {env.get('cpu_model')} ({env.get('cpu_count')} cores); {where}, {turn}, "
          f"{args.runs} turns per bundle and run, {args.pause_ms:g} ms idle before each turn, {args.repeat} runs "
          f"(ranges over the runs; ratios within each run); OpenVINO compiled at f32 (read back)")
    head = (f"{'model':<14} {'thr':>3}  {'LiteRT fp32':>11} {'OV fp32':>11} {'OV/LiteRT':>9}  {'LiteRT int8':>11} "
            f"{'OV int8':>11} {'OV/LiteRT':>9}  {'int8/fp32 LiteRT':>16} {'int8/fp32 OV':>12}")
    print("\n" + head + "\n" + "-" * len(head))
    extra_rows = []
    for depth in depths:
        paths = {t: bundle_dir(args.out, depth, *t) for t in TARGETS}
        also = [p for p in args.also if _depth_of(p) == depth]
        for n in threads:
            timer = time_in_processes if args.processes else time_interleaved
            runs = [timer(list(paths.values()) + also, n, args.runs, args.pause_ms, args.burst)
                    for _ in range(args.repeat)]
            p50 = {t: [r[p] for r in runs] for t, p in paths.items()}

            def ratio(a, b):
                return _span([r[paths[a]] / r[paths[b]] for r in runs], ".2f") + "x"
            lt32, ov32, lt8, ov8 = (("tflite", "fp32"), ("openvino", "fp32"), ("tflite", "int8"), ("openvino", "int8"))
            print(f"{'Lite-HRNet-' + str(depth):<14} {n:>3}  {_span(p50[lt32], '.2f'):>11} {_span(p50[ov32], '.2f'):>11} "
                  f"{ratio(ov32, lt32):>9}  {_span(p50[lt8], '.2f'):>11} {_span(p50[ov8], '.2f'):>11} "
                  f"{ratio(ov8, lt8):>9}  {ratio(lt8, lt32):>16} {ratio(ov8, ov32):>12}")
            extra_rows += [(depth, n, p, [r[p] / r[paths[lt32]] for r in runs], [r[p] for r in runs]) for p in also]
    print("(p50 in ms; OV/LiteRT below 1: OpenVINO faster; int8/fp32 below 1: int8 faster)")
    for depth, n, p, rel, p50 in extra_rows:
        print(f"also: {p.name} Lite-HRNet-{depth} {n} thr: p50 {_span(p50, '.2f')} ms, "
              f"{_span(rel, '.2f')}x LiteRT fp32")
    if args.profile:
        from edge_pose.bench.profile import profile_bundle, render

        for depth in depths:
            for n in threads:
                print()
                print(render(profile_bundle(bundle_dir(args.out, depth, "openvino", "fp32"), top=8, threads=n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lite-HRNet int8 against fp32 on LiteRT (XNNPACK) and OpenVINO (CPU), before and after the int8 graph forms.

    python benchmarks/litehrnet_int8.py [--depths 18,30] [--runs 100] [--threads 2] [--out DIR] [--no-profile]

Converts Lite-HRNet-18/-30 (weights: the mmpose parity fixture's checkpoint, random by design, so the guard judges
them as it judges an untrained model: the default attempt, figures reported, no mitigation ladder) through the
converters' guarded pipeline, calibrated on coco-mini's detector boxes and judged on its ground-truth crops, into:
  tflite/            fp32 and int8 from the default graph (`for_format="tflite"`): "before"
  tflite-int8/       int8 from the int8 graph (`for_format="tflite-int8"`): "after" (its fp32 stays the default)
  openvino-default/  fp32 and int8 IRs from the default graph: "before"
  openvino/          fp32 and int8 IRs from the OpenVINO graph (`for_format="openvino"`): "after"
Bundles are cached under OUT (default benchmarks/out/litehrnet_int8) and made once, each conversion in its own
`nice -n 10` subprocess. Timing then runs in this process without TensorFlow: every session of one model
interleaved (one inference each, round after round, a short idle before each so one session's spinning worker
threads do not slow the next). OpenVINO sessions are compiled with
INFERENCE_PRECISION_HINT=f32 (this CPU would otherwise run the float parts in bf16). Prints the p50 table with
int8/fp32 ratios per runtime and the profile summary (edge_pose.bench.profile) of each bundle.
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
DEFAULT_OUT = ROOT / "benchmarks" / "out" / "litehrnet_int8"
# variant directory -> (graph form, format, precisions)
VARIANTS = {"tflite": ("tflite", "tflite", ("fp32", "int8")),
            "tflite-int8": ("tflite-int8", "tflite", ("int8",)),
            "openvino-default": ("tflite", "openvino", ("fp32", "int8")),
            "openvino": ("openvino", "openvino", ("fp32", "int8"))}
# (runtime, variant of the fp32 bundle, variant of the int8 bundle): before, then after
ROWS = (("LiteRT/XNNPACK", "tflite", "tflite", "before: default graph"),
        ("LiteRT/XNNPACK", "tflite", "tflite-int8", "after: int8 graph for int8"),
        ("OpenVINO CPU", "openvino-default", "openvino-default", "before: default graph"),
        ("OpenVINO CPU", "openvino", "openvino", "after: openvino graph"))
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def _data() -> Path:
    path = SHARED / "data" / "coco-mini"
    if not (path / "test_coco.json").is_file():
        sys.exit(f"needs coco-mini: {path} not found (set EDGE_POSE_SHARED)")
    return path


def bundle_dir(out: Path, depth: int, variant: str, precision: str) -> Path:
    fmt = VARIANTS[variant][1]
    return out / f"litehrnet-{depth}" / variant / f"litehrnet-{depth}-{fmt}-{precision}"


def convert_variant(out: Path, depth: int, variant: str) -> None:
    """One guarded conversion of one graph form to its format's precisions (runs in a subprocess: TensorFlow)."""
    import shutil
    import tempfile

    from calibration.fidelity import Thresholds
    from calibration.plan import calibration_and_eval
    from converters.convert import Conversion
    from converters.guard import run_guard
    from converters.sources import facts as F
    from converters.sources.keras_source import load_zoo

    form, fmt, precisions = VARIANTS[variant]
    data = _data()
    checkpoint = SHARED / "fixtures" / "mmpose" / f"litehrnet{depth}_256x192.pth"
    source = load_zoo(f"litehrnet-{depth}", F.Facts(), checkpoint, 0, for_format=form)
    # the fixture's weights are random by design (its NOTICE): the guard judges such a model by its default
    # attempt only (no peaks to agree on, mitigations would chase noise), and the manifest says untrained
    source.untrained = True
    calib, evals = calibration_and_eval(source.input.size, str(data / "test_coco.json"), None, str(data),
                                        str(data / "test_coco_det_AP_H_56.json"), 64)
    work = Path(tempfile.mkdtemp(prefix="edge-pose-bench-"))
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        pipe = Conversion(source, calib, evals, work, Thresholds(), 0, None, None, log)
        for precision in precisions:
            target = bundle_dir(out, depth, variant, precision)
            if (target / "edge_pose.json").is_file():
                continue
            outcome = run_guard(fmt, precision, source, lambda m, p=precision: pipe.attempt(fmt, p, m),
                                allow_degraded=True, log=log)
            done = pipe.finish(fmt, precision, outcome, target.parent)
            log(f"wrote {done.bundle.path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure(out: Path, depths) -> None:
    for depth in depths:
        for variant, (_, _, precisions) in VARIANTS.items():
            if all((bundle_dir(out, depth, variant, p) / "edge_pose.json").is_file() for p in precisions):
                continue
            print(f"converting Lite-HRNet-{depth} ({variant}) ...", file=sys.stderr, flush=True)
            started = time.time()
            subprocess.run(["nice", "-n", "10", sys.executable, __file__, "--convert", str(depth), variant,
                            "--out", str(out)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            print(f"  {time.time() - started:.0f} s", file=sys.stderr, flush=True)


def _open(path: Path, threads: int):
    from edge_pose.backends.litert import LiteRTBackend
    from edge_pose.backends.openvino import OpenVINOBackend
    from edge_pose.bench.runner import sample_input
    from edge_pose.bundle import load_bundle

    bundle = load_bundle(path)
    if bundle.manifest.format == "tflite":
        session = LiteRTBackend().load(bundle, "cpu", {"threads": threads})
    else:
        session = OpenVINOBackend().load(bundle, "CPU", {"threads": threads, "cache_dir": False, "config": F32})
    return bundle, session, sample_input(bundle)


def time_interleaved(paths: list[Path], threads: int, runs: int, pause_ms: float, warmup: int = 10
                     ) -> dict[Path, float]:
    """p50 per bundle, one inference of each in turn; `pause_ms` idle before each timed inference, so that the
    worker threads the previous session leaves spinning (XNNPACK's pthreadpool, OpenVINO's executor) have gone
    to sleep: without it, two OpenVINO models interleaved at 2 threads on 2 cores measured 1.6-3x slower."""
    import numpy as np

    loaded = [(p, *_open(p, threads)) for p in paths]
    for _, _, session, x in loaded:
        for _ in range(warmup):
            session.infer(x)
    times: dict[Path, list[float]] = {p: [] for p in paths}
    for _ in range(runs):
        for p, _, session, x in loaded:
            time.sleep(pause_ms / 1e3)
            start = time.perf_counter()
            session.infer(x)
            times[p].append((time.perf_counter() - start) * 1e3)
    return {p: float(np.median(t)) for p, t in times.items()}


def _fidelity(path: Path) -> str:
    fid = json.loads((path / "edge_pose.json").read_text()).get("fidelity", {})
    if "oks_agreement" not in fid:
        return f"max rel diff {fid.get('heatmap_max_rel_diff', float('nan')):.1e}"
    ap = fid.get("ap_drop")
    return (f"OKS {fid['oks_agreement']:.3f}, AP drop {ap:+.2f}" if ap is not None else
            f"OKS {fid['oks_agreement']:.3f}") + (", passed" if fid.get("passed") else ", MISSED")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="18,30")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--pause-ms", type=float, default=5.0, help="idle time before each timed inference")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--convert", nargs=2, metavar=("DEPTH", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.convert:
        convert_variant(args.out, int(args.convert[0]), args.convert[1])
        return 0
    depths = [int(d) for d in args.depths.split(",")]
    ensure(args.out, depths)
    from edge_pose.bench.environment import collect

    env = collect()
    print(f"CPU: {env.get('cpu_model')} ({env.get('cpu_count')} cores); {args.threads} threads, {args.runs} "
          f"interleaved runs per bundle, {args.pause_ms:g} ms idle before each; OpenVINO compiled with "
          f"INFERENCE_PRECISION_HINT=f32")
    print(f"\n{'model':<14} {'runtime':<15} {'graph':<28} {'fp32 p50':>9} {'int8 p50':>9} {'int8/fp32':>9}  "
          f"int8 fidelity (guard, fixture weights)")
    for depth in depths:
        paths = {(v, p): bundle_dir(args.out, depth, v, p) for v, (_, _, ps) in VARIANTS.items() for p in ps}
        p50 = time_interleaved(list(paths.values()), args.threads, args.runs, args.pause_ms)
        for runtime, fp32_variant, int8_variant, label in ROWS:
            fp32, int8 = p50[paths[(fp32_variant, "fp32")]], p50[paths[(int8_variant, "int8")]]
            print(f"{'Lite-HRNet-' + str(depth):<14} {runtime:<15} {label:<28} {fp32:>7.2f}ms {int8:>7.2f}ms "
                  f"{int8 / fp32:>8.2f}x  {_fidelity(paths[(int8_variant, 'int8')])}")
        ov, lt = p50[paths[("openvino", "fp32")]], p50[paths[("tflite", "fp32")]]
        print(f"{'':<14} OpenVINO fp32 (openvino graph) / LiteRT fp32: {ov / lt:.2f}x")
    print("(int8/fp32: the int8 p50 over the fp32 p50 of the same runtime, below 1 = int8 faster; target <= 0.77)")
    if not args.no_profile:
        from edge_pose.bench.profile import profile_bundle, render

        for depth in depths:
            for v, (_, _, ps) in VARIANTS.items():
                for p in ps:
                    print()
                    print(render(profile_bundle(bundle_dir(args.out, depth, v, p), top=8, threads=args.threads,
                                                per_op=p == "int8")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

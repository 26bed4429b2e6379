"""Measure bundles on this device: load time, first inference, then interleaved timed runs with percentiles.

`edge-pose bench BUNDLE_OR_DIR... --json OUT` measures; `edge-pose bench report RESULTS.json... --out DIR` merges
results from many devices into a markdown table and PNG charts.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HELP = "measure latency per bundle, backend and thread count; `bench report` merges results"


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="BUNDLE_OR_DIR",
                   help="bundles or directories of bundles (or: report RESULTS.json...)")
    p.add_argument("--device", default="auto", help="auto or a device profile name")
    p.add_argument("--backend", help="litert or openvino (default: the profile's plan)")
    p.add_argument("--accelerator", help="e.g. CPU, GPU, NPU, xnnpack, gpu")
    p.add_argument("--threads", default="", help="comma list, e.g. 1,2,4 (default: the plan's)")
    p.add_argument("--runs", type=int, default=50, help="timed inferences per variant (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="discarded inferences per variant (default 5)")
    p.add_argument("--pipeline", metavar="IMAGE_OR_VIDEO", help="also time the whole pipeline per stage on this input")
    p.add_argument("--pin", metavar="CORES", help="pin to these cores, e.g. 2,3")
    p.add_argument("--json", metavar="OUT", help="write results JSON here")
    p.add_argument("--out", metavar="DIR", help="(report) output directory")
    p.add_argument("--profile", action="store_true",
                   help="also show where each bundle's time goes (delegate partitions, per-op / per-layer times)")


def _progress(label: str):
    tty = sys.stderr.isatty()

    def show(i: int, n: int) -> None:
        if tty or i == n or i % max(1, n // 4) == 0:
            bar = "#" * int(30 * i / n)
            end = "\n" if (i == n or not tty) else ""
            print(f"\r{label} [{bar:<30}] {i}/{n}", end=end, file=sys.stderr, flush=True)
    return show


def _report(args) -> int:
    from edge_pose.bench.report import write_report
    from edge_pose.errors import EdgePoseError

    if not args.out:
        raise EdgePoseError("bench report needs --out DIR")
    written = write_report(args.paths[1:], args.out)
    print((Path(args.out) / "report.md").read_text())
    for kind, path in written.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def run(args) -> int:
    if args.paths[0] == "report":
        return _report(args)
    from edge_pose.bench import environment, runner
    from edge_pose.bench.schema import SCHEMA
    from edge_pose.errors import EdgePoseError

    if args.runs < 1 or args.warmup < 0:
        raise EdgePoseError("--runs must be >= 1 and --warmup >= 0")
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()] or [None]
        pinned = [int(c) for c in args.pin.split(",")] if args.pin else None
    except ValueError:
        raise EdgePoseError(f"--threads/--pin take comma lists of integers, got {args.threads!r}/{args.pin!r}") from None
    if pinned:
        runner.pin_cores(pinned)
    variants = runner.make_variants(args.paths, threads)
    warnings = []
    for v in variants:
        print(f"loading {v.label} ...", file=sys.stderr, flush=True)
        try:
            runner.load_variant(v, args.device, args.backend, args.accelerator)
        except EdgePoseError as exc:
            v.error = str(exc)
            warnings.append(f"{v.label}: not measured: {exc}")
            print(f"  skipped: {exc}", file=sys.stderr)
    measured = [v for v in variants if not v.error]
    if measured:
        runner.run_interleaved(measured, args.runs, args.warmup, _progress("timing (interleaved)"))
    results = [runner.variant_result(v) for v in variants]
    warnings += [r["warning"] for r in results if r.get("warning")]
    doc = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": _device(args.device),
        "environment": environment.collect(),
        "settings": {"runs": args.runs, "warmup": args.warmup, "interleaved": len(measured) > 1,
                     "pinned_cores": pinned, "backend": args.backend, "accelerator": args.accelerator,
                     "threads": threads},
        "results": results,
        "peak_rss_mb": runner.peak_rss_mb(),
        "warnings": warnings,
    }
    if args.pipeline:
        from edge_pose.bench.pipeline import time_pipeline

        doc["pipeline"] = [time_pipeline(v, args.pipeline, args.runs) for v in measured]
    _print_table(doc)
    if args.profile:
        _print_profiles(measured)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"results: {args.json}", file=sys.stderr)
    return 0 if measured else 2


def _print_profiles(variants) -> None:
    from edge_pose.bench.profile import profile_bundle, render

    for v in variants:
        print()
        print(render(profile_bundle(v.bundle.path, threads=v.threads)))


def _device(name: str) -> dict:
    from edge_pose.select import resolve_profile

    profile, reasons = resolve_profile(name)
    return {"profile": profile.name, "reasons": reasons}


def _print_table(doc: dict) -> None:
    from edge_pose.bench.report import in_use

    print(f"{'variant':<40} {'runtime':<28} {'load s':>7} {'first ms':>9} {'p50 ms':>8} {'p90 ms':>8} "
          f"{'p99 ms':>8} {'std':>6} {'FPS':>7}")
    for r in doc["results"]:
        if "error" in r:
            print(f"{r['label']:<40} not measured: {r['error']}")
            continue
        where = f"{r['runtime'].get('backend', '?')}/{in_use(r['runtime'])}"
        lat = r["latency"]
        print(f"{r['label']:<40} {where:<28} {r['load_s']:>7.2f} {r['first_inference_ms']:>9.1f} "
              f"{lat['p50_ms']:>8.2f} {lat['p90_ms']:>8.2f} {lat['p99_ms']:>8.2f} {lat['std_ms']:>6.2f} "
              f"{lat['throughput_per_s']:>7.1f}")
    for p in doc.get("pipeline") or []:
        stages = "  ".join(f"{k} {v:.2f}" for k, v in p["stage_p50_ms"].items())
        print(f"pipeline {p['label']}: {p['fps']:.1f} FPS end to end; p50 ms per stage: {stages}")
    print(f"peak RSS {doc['peak_rss_mb']:.0f} MB")

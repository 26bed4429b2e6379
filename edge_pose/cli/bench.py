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
    from edge_pose.cli import selection

    selection.add_arguments(p, threads=False)
    p.add_argument("--threads", default="", help="comma list, e.g. 1,2,4 (default: the plan's)")
    p.add_argument("--record", nargs="?", const="", default=None, metavar="FILE_OR_DIR",
                   help="store the p50s for this device where explain/predict/serve rank by them (default: beside "
                        "the bundles; or this file or directory, which $EDGE_POSE_RECORDS can point to)")
    p.add_argument("--runs", type=int, default=50, help="timed inferences per variant (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="discarded inferences per variant (default 5)")
    p.add_argument("--pipeline", metavar="IMAGE_OR_VIDEO", help="also time the whole pipeline per stage on this input")
    p.add_argument("--boxes", default=None, metavar="frame|hog|detector|FILE",
                   help="--pipeline's person boxes (default: the detector when there is one, else the whole frame)")
    p.add_argument("--detector", metavar="BUNDLE_OR_DIR",
                   help="--pipeline's person detector (default: a detect bundle beside the pose bundles)")
    p.add_argument("--detector-threads", type=int, metavar="N",
                   help="--pipeline: the detector's threads (default: its backend's; on 2 cores 1 leaves the other "
                        "core to pose inference while the stream detects ahead)")
    p.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="--pipeline: run the detector every N frames, carrying boxes from the keypoints between")
    p.add_argument("--pipeline-mode", default="stream", choices=("stream", "serial", "both"),
                   help="--pipeline: stream (read, boxes and crop in threads ahead of inference; default), serial "
                        "(the stages one after another) or both, one after the other")
    p.add_argument("--pin", metavar="CORES", help="pin to these cores, e.g. 2,3")
    p.add_argument("--json", metavar="OUT", help="write results JSON here")
    p.add_argument("--out", metavar="DIR", help="(report) output directory")
    p.add_argument("--profile", action="store_true",
                   help="also show where each bundle's time goes (delegate partitions, per-op / per-layer times)")


def _progress(label: str):
    """run_interleaved's show(i, n) callback on the one progress helper (a bar on a terminal, lines otherwise)."""
    from edge_pose.progress import bar

    shown = {}

    def show(i: int, n: int) -> None:
        if "bar" not in shown:
            shown["bar"] = bar(label, n, unit="run")
        shown["bar"].update(i - shown["bar"].n)
        if i == n:
            shown["bar"].close()
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
    if args.detect_every < 1:
        raise EdgePoseError(f"--detect-every must be at least 1, got {args.detect_every}")
    if any(t is not None and t < 1 for t in threads):
        raise EdgePoseError(f"--threads: every count must be at least 1, got {args.threads!r}")
    if pinned:
        runner.pin_cores(pinned)
    from edge_pose.cli import selection

    variants, refused = runner.make_variants(args.paths, threads)
    warnings = [f"{r.path.name}: not measured: refused: {r.reason}" for r in refused]
    for v in variants:
        print(f"loading {v.label} ...", file=sys.stderr, flush=True)
        try:
            runner.load_variant(v, selection.options(args))
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

        detector, boxes = _pipeline_boxes(args)
        modes = ("stream", "serial") if args.pipeline_mode == "both" else (args.pipeline_mode,)
        doc["pipeline"] = [time_pipeline(v, args.pipeline, args.runs, boxes, detector, args.detect_every,
                                         _progress(f"pipeline {v.label} ({mode})"), mode=mode)
                           for v in measured if v.bundle.manifest.task == "pose" for mode in modes]
    _print_table(doc)
    if args.profile:
        _print_profiles(measured)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.record is not None and measured:
        for path in runner.record(measured, doc["device"]["profile"], args.record or None):
            print(f"recorded p50s for this device in {path} (explain, predict and serve now rank by them)",
                  file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"results: {args.json}", file=sys.stderr)
    return 0 if measured else 2


def _pipeline_boxes(args):
    """(Detector or None, box source name) for --pipeline."""
    from edge_pose.errors import EdgePoseError
    from edge_pose.estimator import find_detector

    if args.detect_every < 1:
        raise EdgePoseError(f"--detect-every must be at least 1, got {args.detect_every}")
    path = args.detector or (find_detector(args.paths[0]) if args.boxes in (None, "detector") else None)
    if path is None:
        if args.boxes == "detector":
            raise EdgePoseError("--boxes detector: no detector (give --detector BUNDLE_OR_DIR)")
        return None, args.boxes or "frame"
    from edge_pose.cli import selection
    from edge_pose.detect.bundle import open_detector

    opts = {k: v for k, v in selection.options(args).items() if k not in ("device", "threads")}
    if args.detector_threads is not None:
        if args.detector_threads < 1:
            raise EdgePoseError(f"--detector-threads must be at least 1, got {args.detector_threads}")
        opts["threads"] = args.detector_threads
    return open_detector(path, device=args.device, **opts), "detector"


def _pipeline_line(p: dict) -> str:
    """One pipeline row: end-to-end FPS beside the rate inference alone allows, and what bounds it."""
    stages = "  ".join(f"{k} {v:.2f}" for k, v in p["stage_p50_ms"].items())
    line = f"pipeline {p['label']} ({p['mode']}, boxes {p['boxes']}"
    line += f", detect every {p['detect_every']})" if p["boxes"] == "detector" else ")"
    line += f": {p['fps']:.1f} FPS end to end, {p['people_per_frame']:.2f} people/frame"
    if p.get("inference_bound_fps"):
        line += (f"; pure inference {p['inference_fps']:.1f} FPS -> {p['inference_bound_fps']:.1f} frames/s at "
                 f"this many people, e2e/inference {p['ratio_to_inference']:.2f}x")
        if p.get("block_ratios"):
            lo, hi = min(p["block_ratios"]), max(p["block_ratios"])
            line += f" (blocks {lo:.2f}-{hi:.2f}x; inference timed in blocks alternating with the pipeline's)"
    if p.get("infer_share") is not None:
        line += f"; {p['infer_share']:.0%} of the time in inference"
    if p.get("read_fps"):
        line += f"; read alone {p['read_fps']:.1f} FPS"
        if p.get("bound_by") == "read":
            line += " (slower than inference: the bound is the decode)"
    line += f"\n  p50 ms per stage: {stages}"
    if p.get("stage_mean_ms"):
        line += "\n  mean ms per stage: " + "  ".join(f"{k} {v:.2f}" for k, v in p["stage_mean_ms"].items())
    return line


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
    from edge_pose.cli.table import format_table

    cells = []
    for r in doc["results"]:
        if "error" in r:
            continue
        lat = r["latency"]
        cells.append([r["label"], f"{r['runtime'].get('backend', '?')}/{in_use(r['runtime'])}", f"{r['load_s']:.2f}",
                      f"{r['first_inference_ms']:.1f}", f"{lat['p50_ms']:.2f}", f"{lat['p90_ms']:.2f}",
                      f"{lat['p99_ms']:.2f}", f"{lat['std_ms']:.2f}", f"{lat['throughput_per_s']:.1f}"])
    if cells:
        print(format_table(["variant", "runtime", "load s", "first ms", "p50 ms", "p90 ms", "p99 ms", "std", "FPS"],
                           cells, right=range(2, 9)))
    for r in doc["results"]:
        if "error" in r:
            print(f"{r['label']}: not measured: {r['error']}")
    for p in doc.get("pipeline") or []:
        print(_pipeline_line(p))
    print(f"peak RSS {doc['peak_rss_mb']:.0f} MB")

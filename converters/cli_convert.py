"""Convert a pose model (zoo name or model file) into edge bundles: TFLite and/or OpenVINO, fp32 to int8, each
checked against its source on crops not used for calibration, int8 rescued by the fidelity guard when it can be.

Examples:
  edge-pose convert model.onnx --color rgb --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375 \\
      --keypoints coco17 --format tflite --precision int8 --calib coco/person_keypoints.json --out bundles/
  edge-pose convert litehrnet-18 --checkpoint litehrnet18.pth --device rpi5 --calib frames/ --eval coco.json --out b/
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from converters.cli_common import add_verbose_argument, convert_tool_errors, library_noise, stdout_to_stderr

HELP = "convert a model into TFLite/OpenVINO bundles (calibrated, fidelity-checked)"
EPILOG = """exit status:
  0  every bundle written (a degraded one only with --allow-degraded, marked so)
  1  it ran, but a target missed its fidelity thresholds (no bundle written for it): as edge-pose validate
  2  bad input or a tool error (one line naming the file and what is wrong)"""


def add_arguments(p) -> None:
    p.add_argument("source", help="zoo name (litehrnet-18, ...) or model file (.onnx, .pb, .keras, SavedModel dir); "
                                  "a ready .tflite or OpenVINO .xml is packaged as is, not converted")
    p.add_argument("--reference", metavar="SOURCE", help="a ready .tflite/.xml: the source model to judge it against")
    p.add_argument("--checkpoint", metavar="PTH|coco",
                   help="mmpose checkpoint for a zoo model, or 'coco': the official COCO one, downloaded once into "
                        "~/.cache/edge-pose/checkpoints and verified (default: seeded, untrained)")
    p.add_argument("--device", metavar="PROFILE", help="build what this device profile runs best (e.g. rpi5)")
    from registry import FORMATS, PRECISIONS

    p.add_argument("--format", dest="formats", action="append", default=[],
                   choices=[f for f, e in FORMATS.items() if e.precisions],
                   help="target format (repeatable; default tflite and openvino, or the device's set)")
    p.add_argument("--precision", dest="precisions", action="append", default=[], choices=list(PRECISIONS),
                   help="target precision (repeatable): " + "; ".join(f"{p.name}: {p.label}"
                                                                    for p in PRECISIONS.values()))
    p.add_argument("--calib", metavar="DATA", help="calibration data: COCO keypoint JSON, image folder or video")
    p.add_argument("--images", metavar="DIR", help="images of a COCO JSON when not beside it")
    p.add_argument("--boxes", metavar="DETS", help="COCO detection results giving the --calib JSON's person boxes "
                                                   "(evaluation then uses its ground-truth people)")
    p.add_argument("--detector", metavar="whole|hog|BUNDLE",
                   help="person boxes in image folders and videos: OpenCV HOG (default), a detect bundle or a folder "
                        "holding one (edge-pose convert ... --task detect), or 'whole' (one crop per image)")
    p.add_argument("--min-box-score", type=float, default=0.3, metavar="S",
                   help="calibrate only on person boxes (--boxes detections, --detector's boxes) scoring at least S "
                        "(default 0.3)")
    p.add_argument("--calib-size", type=int, default=64, metavar="N", help="calibration crops (default 64)")
    p.add_argument("--eval", dest="eval_data", metavar="DATA", help="evaluation data (default: held-out --calib)")
    p.add_argument("--eval-size", type=int, metavar="N", help="at most N evaluation crops")
    p.add_argument("--folds", type=int, default=4, metavar="K",
                   help="--task detect int8 with --calib COCO.json alone: cross-calibration folds by image (default 4)")
    g = p.add_argument_group("facts a model file cannot tell")
    g.add_argument("--input-size", metavar="H,W")
    g.add_argument("--layout", choices=["NCHW", "NHWC"])
    g.add_argument("--color", choices=["rgb", "bgr"])
    g.add_argument("--mean", metavar="R,G,B", help="in 0..255 units")
    g.add_argument("--std", metavar="R,G,B", help="in 0..255 units")
    g.add_argument("--keypoints", metavar="coco17|aic14|FILE")
    g.add_argument("--output", metavar="NAME", help="the heatmap output tensor")
    d = p.add_argument_group("facts a detector file cannot tell (--task detect with .onnx, .tflite or .xml)")
    d.add_argument("--head", choices=["yolox", "yolov8", "end2end"], help="the detector's output head")
    d.add_argument("--strides", metavar="8,16,32", help="yolox raw head: strides of its levels, finest first")
    d.add_argument("--resize", choices=["stretch", "letterbox"], help="how frames reach the input size")
    d.add_argument("--pad", choices=["corner", "center"], help="letterbox: image at the top-left or centred")
    d.add_argument("--person-class", type=int, help="person's index on the head's class axis (default 0)")
    d.add_argument("--outputs", metavar="A,B", help="the output tensors, in the head's order (default: the model's)")
    t = p.add_argument_group("fidelity thresholds")
    t.add_argument("--max-rel-diff", type=float, default=1e-4, help="fp32: heatmap max |diff| / max |ref|")
    t.add_argument("--max-keypoint-error", type=float, default=0.05, help="fp16: mean keypoint error, heatmap px")
    t.add_argument("--max-bf16-keypoint-error", type=float, default=0.4, help="bf16: mean keypoint error, heatmap px")
    t.add_argument("--min-oks", type=float, default=0.95, help="int8: mean OKS agreement with the source")
    t.add_argument("--max-ap-drop", type=float, default=1.0, help="int8: COCO AP drop in points (with GT)")
    p.add_argument("--allow-degraded", action="store_true", help="keep the closest int8 bundle when none passes")
    p.add_argument("--seed", type=int, default=0, help="seed for crop selection and untrained weights")
    p.add_argument("--json", action="store_true", help="print the fidelity figures as JSON on stdout")
    p.add_argument("--out", required=True, metavar="DIR", help="receives one bundle directory per target")
    from registry import TASKS

    p.add_argument("--task", choices=tuple(TASKS), default="pose",
                   help="pose (default) or detect: a person detector (TF Object Detection API SSD frozen graph) "
                        "judged by person box AP on --calib's frames")
    add_verbose_argument(p)


def run(args) -> int:
    with library_noise(getattr(args, "verbose", 0)):
        return _run(args)


def _detect_facts(args) -> dict:
    def numbers(text, kind=float):
        return [kind(v) for v in text.split(",")] if text else None

    try:
        return {"head": args.head, "input_size": numbers(args.input_size, int), "layout": args.layout,
                "color": args.color, "mean": numbers(args.mean), "std": numbers(args.std), "resize": args.resize,
                "pad": args.pad, "person_class": args.person_class, "strides": numbers(args.strides, int),
                "outputs": args.outputs.split(",") if args.outputs else None}
    except ValueError as exc:
        from converters.errors import ConversionError

        raise ConversionError(f"detector facts: {exc}") from None


def _run_package(args) -> int:
    from converters.detect.package import package_detector

    with convert_tool_errors():
        with stdout_to_stderr():
            done = package_detector(args.source, args.out, _detect_facts(args), formats=args.formats,
                                    calib=args.calib, log=lambda m: print(m, file=sys.stderr, flush=True))
    for b in done:
        print(f"{b.path}  ({b.manifest.format}, {b.manifest.detect['head']} head)")
    return 0


def _run_detect(args) -> int:
    from converters.detect.convert import DetectThresholds, convert_detector

    if Path(args.source).suffix.lower() in (".onnx", ".tflite", ".xml"):
        return _run_package(args)
    with convert_tool_errors():
        with stdout_to_stderr():
            done = convert_detector(args.source, args.out, formats=args.formats, precisions=args.precisions,
                                    calib=args.calib, images=args.images, eval_data=args.eval_data,
                                    folds=args.folds, calib_limit=args.calib_size,
                                    eval_limit=args.eval_size or 200,
                                    allow_degraded=args.allow_degraded,
                                    thresholds=DetectThresholds(max_ap_drop=args.max_ap_drop),
                                    log=lambda m: print(m, file=sys.stderr, flush=True))
    rows = [{k: v for k, v in c.row.items() if not isinstance(v, dict)} for c in done]
    if args.json:
        print(json.dumps([{**r, "path": str(c.bundle.path)} for r, c in zip(rows, done)], indent=1, default=str))
    else:
        from edge_pose.cli.table import format_table

        keys = ["bundle", "mitigation", "AP", "AP50", "recall50", "ap_source", "ap_drop", "matched", "mean_iou",
                "passed"]
        print(format_table(keys, [[r.get(k) if not isinstance(r.get(k), float) else f"{r[k]:.2f}" for k in keys]
                                  for r in rows]))
    return 0


def _run(args) -> int:
    if args.task == "detect":
        return _run_detect(args)
    with convert_tool_errors():
        from calibration.fidelity import Thresholds, format_table
        from converters.convert import convert
        from converters.guard import GuardFailed
        from converters.package_ready import is_ready_model, package_pose, reference_option

        facts = {"input_size": args.input_size, "layout": args.layout, "color": args.color,
                 "mean": args.mean, "std": args.std,
                 "keypoints": args.keypoints, "output": args.output}
        thresholds = Thresholds(fp32_max_rel_diff=args.max_rel_diff, fp16_keypoint_error_px=args.max_keypoint_error,
                                bf16_keypoint_error_px=args.max_bf16_keypoint_error, int8_oks_agreement=args.min_oks,
                                int8_ap_drop=args.max_ap_drop)
        try:  # converters print to stdout (onnx2tf, NNCF): keep stdout for our table / JSON
            with stdout_to_stderr():
                done = (package_pose if is_ready_model(args.source) else convert)(
                               args.source, args.out, checkpoint=args.checkpoint, device=args.device,
                               formats=args.formats, precisions=args.precisions, calib=args.calib,
                               images=args.images, boxes=args.boxes, detector=args.detector,
                               min_box_score=args.min_box_score, calib_size=args.calib_size,
                               eval_data=args.eval_data, eval_size=args.eval_size, facts=facts,
                               thresholds=thresholds, allow_degraded=args.allow_degraded, seed=args.seed,
                               **reference_option(args.source, args.reference))
        except GuardFailed as exc:
            rows = [{"bundle": a.mitigation.label, **(a.figures or {}), "passed": a.passed}
                    for a in exc.outcome.attempts]
            print(format_table(rows), file=sys.stderr)
            print(f"edge-pose convert: {exc}", file=sys.stderr)
            return 1
    rows = [c.row for c in done]
    if args.json:
        print(json.dumps([{**c.row, "path": str(c.bundle.path), "mitigation": c.outcome.chosen.mitigation.label,
                           "degraded": c.outcome.degraded} for c in done], indent=1))
    else:
        from calibration.fidelity import legend

        print(format_table(rows))
        print(legend(rows), file=sys.stderr)  # what the columns mean, kept out of the table on stdout
        for c in done:
            print(f"{c.bundle.path}  ({c.outcome.chosen.mitigation.label}"
                  f"{', DEGRADED' if c.outcome.degraded else ''})")
    return 0

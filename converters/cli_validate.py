"""Measure a bundle's fidelity against a reference (its source model, or another bundle) on crops from DATA, with
the same figures and thresholds as `edge-pose convert`. Exit status 0 when the bundle meets the thresholds for its
precision, 1 when it misses them, 2 on bad input. Use crops that were not used to calibrate the bundle.
"""
from __future__ import annotations

import json

from converters.cli_common import add_verbose_argument, convert_tool_errors, library_noise, stdout_to_stderr

HELP = "measure a bundle's fidelity against its source (or another bundle) on real crops"
EPILOG = """exit status:
  0  the bundle meets the thresholds for its precision
  1  it ran, but the bundle missed them (the lines starting 'missed:' say which): as edge-pose convert
  2  bad input or a tool error (one line naming the file and what is wrong)"""


def add_arguments(p) -> None:
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--reference", required=True, metavar="SOURCE_OR_BUNDLE",
                   help="the source model (file or zoo name) or a bundle to compare with")
    p.add_argument("--data", required=True, metavar="DATA", help="COCO keypoint JSON, image folder or video")
    p.add_argument("--images", metavar="DIR", help="images of a COCO JSON when not beside it")
    p.add_argument("--boxes", metavar="DETS", help="COCO detection results for the DATA JSON (default: GT boxes)")
    p.add_argument("--detector", metavar="whole|hog|BUNDLE",
                   help="person boxes in an image folder or video: OpenCV HOG (default), a detect bundle, or whole")
    p.add_argument("--min-box-score", type=float, default=0.3, metavar="S",
                   help="leave out person boxes scoring below S (default 0.3)")
    p.add_argument("--size", type=int, metavar="N", help="at most N crops (seeded choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", metavar="PTH|coco",
                   help="checkpoint of a zoo-model reference ('coco': the official one, as for convert)")
    p.add_argument("--output", metavar="NAME", help="the reference model's heatmap output, if it has several")
    p.add_argument("--layout", choices=["NCHW", "NHWC"], help="the reference model's input layout, if unclear")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_verbose_argument(p)


def _reference_heatmaps(args, manifest, crops):
    """Reference heatmaps on the crops: from a bundle, or from the source model given the bundle's facts."""
    from converters.convert import candidate_heatmaps
    from edge_pose.bundle import is_bundle

    if is_bundle(args.reference):
        heatmaps, ref_manifest = candidate_heatmaps(args.reference, crops)
        return heatmaps, f"bundle {ref_manifest.model['name']} {ref_manifest.format}/{ref_manifest.precision}"
    from calibration.inference import heatmaps_on
    from converters.sources import load_source

    inp = manifest.input
    source = load_source(args.reference, checkpoint=args.checkpoint, input_size=(inp.height, inp.width),
                         layout=args.layout, color=inp.color, mean=inp.mean, std=inp.std,
                         keypoints=manifest.keypoints, output=args.output, seed=manifest.provenance.get("seed", 0))
    return heatmaps_on(source.run, source.input, crops, batch=8, desc="reference"), f"source {source.kind}"


def run(args) -> int:
    with library_noise(getattr(args, "verbose", 0)):
        return _run(args)


def _run(args) -> int:
    with convert_tool_errors():
        from calibration.datasets import load_crops
        from calibration.fidelity import Thresholds, compare, format_table
        from converters.convert import candidate_heatmaps
        from edge_pose.bundle import load_bundle

        bundle = load_bundle(args.bundle)
        m = bundle.manifest
        crops = load_crops(args.data, m.input.size, images_dir=args.images, boxes=args.boxes, seed=args.seed,
                           detector=args.detector, min_box_score=args.min_box_score)
        if args.size:
            crops = crops.sample(args.size, args.seed)
        crops.warn_if_small("evaluation")
        with stdout_to_stderr():  # keep stdout for the table / JSON
            candidate, _ = candidate_heatmaps(bundle.path, crops)
            reference, what = _reference_heatmaps(args, m, crops)
        if reference.shape != candidate.shape:
            from edge_pose.errors import EdgePoseError

            raise EdgePoseError(f"{args.reference}: heatmaps {list(reference.shape[1:])} do not match the bundle's "
                                f"{list(candidate.shape[1:])}")
        figures = compare(reference, candidate, m.input.size, crops, m.keypoints, decode_method=m.decode.method,
                          blur_kernel=m.decode.blur_kernel)
        thresholds = Thresholds(**m.fidelity.get("thresholds", {})) if m.fidelity.get("thresholds") else Thresholds()
        missed = thresholds.check(m.precision, figures)
    row = {"bundle": bundle.path.name, "precision": m.precision, **figures, "passed": not missed}
    if args.json:
        print(json.dumps({**row, "reference": what, "data": crops.describe(), "missed": missed,
                          "thresholds": thresholds.to_json()}, indent=1))
    else:
        print(f"reference: {what}; data: {crops.describe()['source']} ({len(crops)} crops)")
        print(format_table([row]))
        for line in missed:
            print(f"missed: {line}")
    return 1 if missed else 0

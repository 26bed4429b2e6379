"""Detector bundles: the shared TF Object Detection API SSD (or one like it) -> TFLite / OpenVINO bundles with the
same manifest, hashing, atomic writes and fidelity guard as pose bundles.

Per target: export into a private work directory, stage a bundle (model files + anchors.npy + a `detect` manifest
section), run it through the runtime exactly as a device would (edge_pose.detect.bundle.open_detector: the same
selector, backend and execution precision), measure person box AP / recall on full frames against the ground truth
and against the source (the cut graph run by TensorFlow with the same decoder), and keep the first attempt that
holds the bar; only then write the bundle atomically into OUT/<model>-<format>-<precision>. int8 is never judged on
a frame it was calibrated on: converters.detect.folds says how, converters.detect.ladder which mitigations.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.errors import ConversionError
from edge_pose.bundle import InputSpec, Manifest, write_bundle

# fp16 and bf16 are held to the same box AP bar as int8 (a detector's boxes are what the pose model sees)
TARGETS = {"tflite": ("fp32", "fp16", "int8"), "openvino": ("fp32", "fp16", "bf16", "int8")}
ANCHORS = "anchors.npy"
AGREE_SCORE = 0.3  # the source's boxes that count as people when there is no ground truth


@dataclass
class DetectThresholds:
    max_ap_drop: float = 1.0  # person box AP points (0..100) against the source on the same frames
    max_recall_drop: float = 1.0  # recall at IoU 0.5, points
    # without ground truth: the source's confident boxes (score >= 0.3) found again at IoU >= 0.5 by the bundle's
    # boxes down to half that score (so a score that moves across 0.3 is not a lost person), and how tightly
    min_matched: float = 0.9
    min_mean_iou: float = 0.8

    def check(self, figures: dict[str, float]) -> list[str]:
        missed = []
        if "AP" not in figures:  # judged by agreement with the source
            a = figures["agreement"]
            if not a["matched_fraction"] >= self.min_matched:
                missed.append(f"source boxes found {a['matched_fraction']:.2f} < {self.min_matched}")
            if not a["mean_best_iou"] >= self.min_mean_iou:
                missed.append(f"mean best IoU {a['mean_best_iou']:.2f} < {self.min_mean_iou}")
            return missed
        if not figures["ap_drop"] <= self.max_ap_drop:
            missed.append(f"box AP drop {figures['ap_drop']:.2f} > {self.max_ap_drop} points")
        if not figures["recall_drop"] <= self.max_recall_drop:
            missed.append(f"recall@0.5 drop {figures['recall_drop']:.2f} > {self.max_recall_drop} points")
        return missed


@dataclass
class DetectConverted:
    bundle: Any
    figures: dict[str, Any]
    row: dict[str, Any] = field(default_factory=dict)


def _export(fmt: str, cut, precision: str, out: Path, calib, options: dict):
    from converters.detect.export import export_openvino, export_tflite

    if fmt == "tflite":
        return export_tflite(cut, precision, out / "model.tflite", calib_inputs=calib, **options)
    return export_openvino(cut, precision, out, calib_inputs=calib, **options)


def _manifest(cut, spec: dict, result, source_path: Path, calib_note: dict | None) -> Manifest:
    from converters.manifest_build import tool_versions
    from edge_pose.bundle import sha256_file

    detect = {k: v for k, v in spec.items() if k != "anchors"}
    names = result.extra["outputs"]
    detect["outputs"] = [names[o] for o in spec["outputs"]]  # the runtime's own tensor names
    detect["anchors_file"] = ANCHORS
    h, w = cut.input_size
    inp = InputSpec(name=result.input_name, height=h, width=w, layout="NHWC", dtype="float32", color=spec["color"],
                    mean=tuple(spec["mean"]), std=tuple(spec["std"]))
    return Manifest(
        model={"name": source_path.parent.name if source_path.stem == "frozen_inference_graph" else source_path.stem,
               "family": "ssd", "untrained": False},
        format=result.format, model_file=result.model_file, precision=result.precision, input=inp, output=None,
        keypoints=None, task="detect", detect=detect,
        provenance={"source": str(source_path), "source_kind": "frozen_graph", "source_sha256": sha256_file(source_path),
                    "tools": {**tool_versions(), **(result.tools or {})}, "calibration": calib_note,
                    "export_notes": list(result.notes), "cut": "Preprocessor output -> raw box encodings and class "
                                                           "logits; anchors evaluated once from the graph"})


def convert_detector(source_path, out_dir, *, formats=(), precisions=(), calib=None, images=None, eval_data=None,
                     folds: int = 4, calib_limit: int = 64, eval_limit: int = 200,
                     thresholds: DetectThresholds | None = None,
                     allow_degraded: bool = False, ladder: dict | None = None,
                     log: Callable[[str], None] = print) -> list[DetectConverted]:
    """Convert a TF Object Detection API SSD frozen graph into detector bundles, one per target.

    `ladder` ({format: [(label, export options)]}) replaces converters.detect.ladder.LADDER's rungs for a format,
    e.g. to build one recipe (benchmarks/detect_int8_rungs.py)."""
    from calibration.detect_fidelity import person_box_ap
    from converters.detect.folds import judging as make_judging
    from converters.detect.ssd_tfod import CutSession, cut_ssd
    from edge_pose.detect.detector import Detector

    source_path = Path(source_path)
    if source_path.suffix != ".pb":
        raise ConversionError(f"{source_path}: --task detect converts TF Object Detection API SSD frozen graphs (.pb); "
                              "package other detectors as bundles (docs/detect.md)")
    thresholds = thresholds or DetectThresholds()
    targets = _targets(formats, precisions, log)
    judging = make_judging(calib, eval_data, images, folds, calib_limit, log,  # bad data fails before the cut
                           calibrate=any(p == "int8" for _, p in targets), eval_limit=eval_limit)
    log(f"[1/3] cutting {source_path} at the Preprocessor's output")
    cut = cut_ssd(source_path)
    spec = cut.spec(score_threshold=0.05)
    log(f"  input {cut.input_size[0]}x{cut.input_size[1]}, {len(cut.anchors)} anchors from the graph")
    log(f"[2/3] {judging.describe()}")
    source = Detector(CutSession(cut), spec)
    src_dets = {i: source.detect(f) for i, f in judging.frames.items()}
    if judging.gt is None:
        src_fig = {"detections_by_image": src_dets}
        n = sum(int((d[:, 4] >= AGREE_SCORE).sum()) for d in src_dets.values())
        log(f"  source (cut graph, TensorFlow): {n} box(es) at score >= {AGREE_SCORE} on {len(src_dets)} frame(s)")
    else:
        src_fig = {**person_box_ap(judging.gt, src_dets), "detections_by_image": src_dets}
        log(f"  source (cut graph, TensorFlow): box AP {src_fig['AP']:.1f}, AP50 {src_fig['AP50']:.1f}, recall@0.5 "
            f"{src_fig['recall50']:.1f}")
    work = Path(tempfile.mkdtemp(prefix="edge-pose-detect-"))
    try:
        return [_target(fmt, precision, cut, spec, judging, src_fig, source_path, Path(out_dir), work, thresholds,
                        allow_degraded, (ladder or {}).get(fmt), f"[3/3] target {i}/{len(targets)}: {fmt}/{precision}",
                        log)
                for i, (fmt, precision) in enumerate(targets, 1)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _said(fig: dict, src_fig: dict) -> str:
    """A rung's figures in a few words: box AP against the source's, or agreement with the source's boxes."""
    a = fig["agreement"]
    agree = (f"{a['matched_fraction']:.0%} of the source's {a['reference_boxes']} confident boxes found, mean best "
             f"IoU {a['mean_best_iou']:.2f}")
    if "AP" not in fig:
        return agree
    return f"box AP {fig['AP']:.1f} (source {src_fig['AP']:.1f}), recall@0.5 {fig['recall50']:.1f}; {agree}"


def _targets(formats, precisions, log) -> list[tuple[str, str]]:
    from converters.targets import unbuildable_here

    formats = [f.lower() for f in formats] or ["tflite", "openvino"]
    precisions = [p.lower() for p in precisions] or ["fp32", "int8"]
    for f in formats:
        if f not in TARGETS:
            raise ConversionError(f"--task detect: format {f!r} not supported (use {', '.join(TARGETS)})")
    targets = []
    for f in formats:
        for p in precisions:
            why = unbuildable_here(f, p) if p in TARGETS[f] else f"{f} has no {p} detector target: skipped"
            if why:
                log(f"note: {why}")
            else:
                targets.append((f, p))
    if not targets:
        raise ConversionError(f"--task detect: nothing to build for {formats} x {precisions}")
    return targets


def _target(fmt, precision, cut, spec, judging, src_fig, source_path, out_dir, work, thresholds, allow_degraded,
            rungs, title, log) -> DetectConverted:
    """One target: climb its ladder (int8) or build it once (float), then write the chosen bundle."""
    from calibration.detect_fidelity import box_agreement, person_box_ap
    from converters.detect.export import calibration_inputs
    from converters.detect.ladder import LADDER, climb, closest, out_of_fold
    from edge_pose.detect.bundle import open_detector
    from registry import FORMATS

    log(title)
    count = [0]

    def build(options, frames, tag):
        count[0] += 1
        exp = work / f"{fmt}-{precision}-{count[0]}"
        zoom = options.get("zoom")  # a calibration view, not an export option
        calib = calibration_inputs(frames, spec, zoom=zoom) if frames is not None else None
        result = _export(fmt, cut, precision, exp, calib, {k: v for k, v in options.items() if k != "zoom"})
        np.save(exp / ANCHORS, cut.anchors.astype(np.float32), allow_pickle=False)
        note = {"kind": judging.scheme, "source": judging.calib_source, "frames": len(calib), "mirrors": True,
                "zoom": zoom} if calib is not None else None
        staged = write_bundle(exp / "bundle", _manifest(cut, spec, result, source_path, note),
                              {**result.files, ANCHORS: exp / ANCHORS})
        det = open_detector(staged.path, backend=FORMATS[fmt].backend, accelerator=FORMATS[fmt].accelerator,
                            allow_degraded=True, records=False)
        return det, staged

    def figures(dets):
        agreement = box_agreement(src_fig["detections_by_image"], dets, AGREE_SCORE, AGREE_SCORE / 2)
        if judging.gt is None:  # the judge: agreement with the source
            return {"agreement": agreement}
        fig = person_box_ap(judging.gt, dets)
        return {**fig, "ap_source": src_fig["AP"], "ap_drop": src_fig["AP"] - fig["AP"],
                "recall_drop": src_fig["recall50"] - fig["recall50"],
                "agreement": agreement}  # reported beside, not judged

    def judge(label, options):
        if precision != "int8":  # nothing calibrated: every image judges the one model
            det, staged = build(options, None, "float")
            fig = figures({i: det.detect(f) for i, f in judging.frames.items()})
        else:
            dets, staged_folds = out_of_fold(judging, build, options, label, log)
            fig = figures(dets)
            staged = staged_folds[0] if judging.bundle_is_judged else None
        missed = thresholds.check(fig)
        log(f"  {fmt}/{precision} ({label}): {_said(fig, src_fig)}" + (f"; missed: {'; '.join(missed)}" if missed
                                                                       else ""))
        return fig, staged

    ladder = (rungs or LADDER[fmt]) if precision == "int8" else [(f"plain {precision}", {})]
    attempts = climb(ladder, judge, thresholds.check, log)
    chosen = closest(attempts)
    if chosen.missed and not allow_degraded:
        raise ConversionError(f"detect {fmt}/{precision} misses the fidelity bar after {len(attempts)} attempt(s): "
                              + "; ".join(f"{a.label}: {'; '.join(a.missed)}" for a in attempts)
                              + " (--allow-degraded keeps the closest one)")
    fig, staged, extra = chosen.figures, chosen.staged, {}
    if staged is None:  # cross-calibrated: the bundle is the chosen recipe calibrated on every frame
        log(f"  {fmt}/{precision}: calibrating the bundle on all {len(judging.bundle_frames)} frame(s) and their "
            f"mirror images by the chosen recipe ({chosen.label})")
        det, staged = build(chosen.options, judging.bundle_frames, "bundle")
        own = figures({i: det.detect(f) for i, f in judging.frames.items()})
        extra["in_sample"] = {k: own[k] for k in ("AP", "AP50", "recall50", "ap_drop", "agreement") if k in own}
        extra["in_sample"]["note"] = "the written bundle on the frames it was calibrated on: not the judge"
    m = staged.manifest
    missed = chosen.missed
    m.fidelity = {**fig, **extra, "passed": not missed, "degraded": bool(missed), "missed": missed,
                  "mitigation": chosen.label, "thresholds": thresholds.__dict__, "reference": "source (cut graph)",
                  "evaluation": {**(judging.record() if precision == "int8" else
                                    {"scheme": "all images (nothing calibrated)", "source": judging.gt_source,
                                     "judged_images": sorted(judging.frames)}),
                                 "ground_truth": judging.gt is not None},
                  "execution_precision": m.execution_precision,
                  "attempts": [{"mitigation": a.label, "ap": a.figures.get("AP"), "missed": a.missed,
                                "matched": a.figures["agreement"]["matched_fraction"]}
                               for a in attempts]}
    name = f"{m.model['name']}-{fmt}-{precision}"
    bundle = write_bundle(out_dir / name, m, {n: staged.path / n for n in m.files})
    log(f"  {fmt}/{precision}: wrote {bundle.path}")
    agree = fig["agreement"]
    return DetectConverted(bundle, fig, {"bundle": name, "precision": precision, **fig, "mitigation": chosen.label,
                                         "matched": agree["matched_fraction"], "mean_iou": agree["mean_best_iou"],
                                         "passed": not missed})

"""Detector bundles: the shared TF Object Detection API SSD (or one like it) -> TFLite / OpenVINO bundles with the
same manifest, hashing, atomic writes and fidelity guard as pose bundles.

Per target: export into a private work directory, stage a bundle (model files + anchors.npy + a `detect` manifest
section), run it through the runtime exactly as a device would (edge_pose.detect.bundle.open_detector: the same
selector, backend and execution precision), measure person box AP / recall on full frames against the ground truth
and against the source (the cut graph run by TensorFlow with the same decoder), and keep the first attempt that
holds the bar; only then write the bundle atomically into OUT/<model>-<format>-<precision>.
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


@dataclass
class DetectThresholds:
    max_ap_drop: float = 1.0  # person box AP points (0..100) against the source on the same frames
    max_recall_drop: float = 1.0  # recall at IoU 0.5, points

    def check(self, figures: dict[str, float]) -> list[str]:
        missed = []
        if not figures["ap_drop"] <= self.max_ap_drop:
            missed.append(f"box AP drop {figures['ap_drop']:.2f} > {self.max_ap_drop} points")
        if not figures["recall_drop"] <= self.max_recall_drop:
            missed.append(f"recall@0.5 drop {figures['recall_drop']:.2f} > {self.max_recall_drop} points")
        return missed


# int8 mitigations, cheapest first (measured on coco-mini: OpenVINO float heads + min-max 42.1 AP vs NNCF default
# 39.8; the float model 43.5)
LADDER: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "tflite": [("full int8, float I/O (default)", {}),
               ("box predictors in float", {"float_ops": ("BoxPredictor",)})],
    "openvino": [("box-predictor convs in float, min-max ranges (default)", {"float_heads": True, "ranges": "minmax"}),
                 ("NNCF MIXED preset, box-predictor convs in float", {"float_heads": True, "preset": "mixed"}),
                 ("NNCF default", {"float_heads": False, "ranges": None})],
}


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


def convert_detector(source_path, out_dir, *, formats=(), precisions=(), calib=None, images=None,
                     thresholds: DetectThresholds | None = None, allow_degraded: bool = False,
                     log: Callable[[str], None] = print) -> list[DetectConverted]:
    """Convert a TF Object Detection API SSD frozen graph into detector bundles, one per target."""
    from calibration.detect_fidelity import load_gt, person_box_ap, run_on_images
    from converters.detect.export import calibration_inputs
    from converters.detect.ssd_tfod import CutSession, cut_ssd
    from edge_pose.detect.bundle import open_detector
    from edge_pose.detect.detector import Detector

    source_path = Path(source_path)
    if source_path.suffix != ".pb":
        raise ConversionError(f"{source_path}: --task detect converts TF Object Detection API SSD frozen graphs (.pb); "
                              "package other detectors as bundles (docs/detect.md)")
    if calib is None:
        raise ConversionError("--task detect needs --calib COCO.json (person boxes: frames to calibrate and judge on)")
    thresholds = thresholds or DetectThresholds()
    formats = [f.lower() for f in formats] or ["tflite", "openvino"]
    precisions = [p.lower() for p in precisions] or ["fp32", "int8"]
    for f in formats:
        if f not in TARGETS:
            raise ConversionError(f"--task detect: format {f!r} not supported (use {', '.join(TARGETS)})")
    from converters.targets import unbuildable_here

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
    log(f"[1/3] cutting {source_path} at the Preprocessor's output")
    cut = cut_ssd(source_path)
    spec = cut.spec(score_threshold=0.05)
    log(f"  input {cut.input_size[0]}x{cut.input_size[1]}, {len(cut.anchors)} anchors from the graph")
    gt = load_gt(calib)
    image_dir = Path(images) if images else Path(calib).parent
    import cv2

    frames = [cv2.imread(str(image_dir / Path(im["file_name"]).name)) for im in gt["images"]]
    if any(f is None for f in frames):
        raise ConversionError(f"{image_dir}: an image of {calib} is missing")
    log(f"[2/3] {len(frames)} full frames from {calib} (and their mirror images) to calibrate; judged on the same "
        "frames against ground truth and the source")
    calib_inputs = calibration_inputs(frames, spec)
    source = Detector(CutSession(cut), spec)
    src_fig = person_box_ap(gt, run_on_images(source.detect, gt, image_dir))
    log(f"  source (cut graph, TensorFlow): box AP {src_fig['AP']:.1f}, AP50 {src_fig['AP50']:.1f}, recall@0.5 "
        f"{src_fig['recall50']:.1f}")
    out_dir = Path(out_dir)
    work = Path(tempfile.mkdtemp(prefix="edge-pose-detect-"))
    done = []
    try:
        for i, (fmt, precision) in enumerate(targets, 1):
            log(f"[3/3] target {i}/{len(targets)}: {fmt}/{precision}")
            attempts = []
            ladder = LADDER[fmt] if precision == "int8" else [(f"plain {precision}", {})]
            for j, (label, options) in enumerate(ladder):
                exp = work / f"{fmt}-{precision}-{j}"
                result = _export(fmt, cut, precision, exp, calib_inputs if precision == "int8" else None, options)
                np.save(exp / ANCHORS, cut.anchors.astype(np.float32), allow_pickle=False)
                note = {"kind": "coco-frames", "source": str(calib), "frames": len(calib_inputs)} \
                    if precision == "int8" else None
                manifest = _manifest(cut, spec, result, source_path, note)
                staged = write_bundle(exp / "bundle", manifest, {**result.files, ANCHORS: exp / ANCHORS})
                fmt_entry = __import__("registry").FORMATS[fmt]
                det = open_detector(staged.path, backend=fmt_entry.backend, accelerator=fmt_entry.accelerator,
                                    allow_degraded=True, records=False)
                fig = person_box_ap(gt, run_on_images(det.detect, gt, image_dir))
                fig = {**fig, "ap_source": src_fig["AP"], "ap_drop": src_fig["AP"] - fig["AP"],
                       "recall_drop": src_fig["recall50"] - fig["recall50"],
                       "execution_precision": det.loaded.session.describe().get("execution_precision")}
                missed = thresholds.check(fig)
                log(f"  {fmt}/{precision} ({label}): box AP {fig['AP']:.1f} (source {src_fig['AP']:.1f}), "
                    f"recall@0.5 {fig['recall50']:.1f}" + (f"; missed: {'; '.join(missed)}" if missed else ""))
                attempts.append((label, fig, missed, staged))
                if not missed:
                    break
            label, fig, missed, staged = min(attempts, key=lambda a: (bool(a[2]), a[1]["ap_drop"]))
            if missed and not allow_degraded:
                raise ConversionError(f"detect {fmt}/{precision} misses the fidelity bar after {len(attempts)} "
                                      f"attempt(s): " + "; ".join(f"{a[0]}: {'; '.join(a[2])}" for a in attempts)
                                      + " (--allow-degraded keeps the closest one)")
            m = staged.manifest
            m.fidelity = {**fig, "passed": not missed, "degraded": bool(missed), "missed": missed,
                          "mitigation": label, "thresholds": thresholds.__dict__, "reference": "source (cut graph)",
                          "evaluation": {"source": str(calib), "frames": len(frames), "ground_truth": True},
                          "attempts": [{"mitigation": a[0], "ap": a[1]["AP"], "missed": a[2]} for a in attempts]}
            name = f"{m.model['name']}-{fmt}-{precision}"
            bundle = write_bundle(out_dir / name, m, {n: staged.path / n for n in m.files})
            log(f"  {fmt}/{precision}: wrote {bundle.path}")
            done.append(DetectConverted(bundle, fig, {"bundle": name, "precision": precision, **fig,
                                                      "passed": not missed}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done

"""A ready .tflite or OpenVINO .xml pose model as a bundle, without conversion: the file is copied as it is, with
the same manifest, hashes, atomic write and runtime check as a converted bundle.

A packaged file has no source to compare with unless the user names one: with `reference` (e.g. the frozen graph the
.tflite was made from) it is judged like a converted bundle, by the same figures and the thresholds of its precision,
on the evaluation crops; missing them fails as the guard does (exit 1; `allow_degraded` keeps it marked degraded),
though there is nothing to mitigate: packaging does not convert. Without a reference it is run once through the
runtime on the crops (generated images when no data is given) to prove it loads and gives finite heatmaps of the
stated shape, and its fidelity section says it was packaged as is, not judged (`judged: false`, `passed: null`).
"""
from __future__ import annotations

import datetime as _dt
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from calibration.fidelity import Thresholds, compare
from converters.convert import Converted, bundle_name, candidate_heatmaps
from converters.errors import ConversionError, SourceError
from converters.guard import Attempt, GuardFailed, GuardOutcome, Mitigation
from converters.manifest_build import devices_for, tool_versions
from converters.sources.ready import READY, ReadyModel, read_ready
from edge_pose.bundle import Manifest, write_bundle
from registry import FORMATS

PACKAGED = "packaged as is, not converted"
UNJUDGED = "packaged as is, not judged"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def is_ready_model(path) -> bool:
    return Path(path).suffix.lower() in READY


def reference_option(source, reference) -> dict[str, Any]:
    """convert()'s extra keyword for a ready file; a reference for a source that is converted is refused."""
    if reference is None:
        return {}
    if not is_ready_model(source):
        raise SourceError(f"{source}: --reference judges a ready .tflite or .xml; a converted bundle is always "
                          f"judged against its own source")
    return {"reference": reference}


def _check_targets(ready: ReadyModel, formats, precisions) -> None:
    """Packaging keeps the file's own format and precision; asking for others is one line."""
    other_f = sorted({f for f in formats if f != ready.format})
    other_p = sorted({p for p in precisions if p != ready.precision})
    if other_f or other_p:
        asked = ", ".join([*(f"--format {f}" for f in other_f), *(f"--precision {p}" for p in other_p)])
        raise ConversionError(f"{ready.path}: a ready {ready.format} file is packaged as it is "
                              f"({ready.format}/{ready.precision}); {asked} would need a conversion: convert its "
                              f"source model (.onnx, .pb, .keras, SavedModel) instead")


def _reference(ref, ready: ReadyModel):
    """The reference Source with the packaged file's facts; it names its own tensors and layout."""
    from converters.sources import load_source

    inp = ready.input
    facts = dict(input_size=inp.size, color=inp.color, mean=inp.mean, std=inp.std, keypoints=ready.keypoints)
    try:  # the same heatmap tensor name first (a .tflite made from a frozen graph keeps it), else its own
        return load_source(ref, output=ready.output.name, **facts)
    except SourceError:
        return load_source(ref, **facts)


def _manifest(ready: ReadyModel, device, evaluation: dict, seed: int) -> Manifest:
    fmt = ready.format
    return Manifest(
        model={"name": ready.model_name, "family": "unknown", "untrained": False},
        format=fmt, model_file=FORMATS[fmt].model_file, precision=ready.precision, input=ready.input,
        output=ready.output, keypoints=ready.keypoints, devices=devices_for(fmt, ready.precision, device),
        provenance={"source": str(ready.path), "source_kind": fmt, "source_sha256": ready.sha256,
                    "packaged_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "tools": tool_versions(), "seed": seed, "calibration": None, "evaluation": evaluation,
                    "export_notes": list(ready.notes)})


def _judge(staged, ready: ReadyModel, reference, source, eval_set, thresholds: Thresholds, allow_degraded: bool,
           log):
    """(fidelity section, figures, outcome) of the staged bundle: against the reference source, or unjudged."""
    fmt, precision = ready.format, ready.precision
    log(f"[3/3] {fmt}/{precision}: running the packaged file through the runtime on {len(eval_set)} crops")
    cand, _ = candidate_heatmaps(staged.path, eval_set, fmt)
    want = (len(eval_set), len(ready.keypoints.names), *ready.output.size)
    if cand.shape != want or not np.isfinite(cand).all():
        raise ConversionError(f"{ready.path}: the runtime gives heatmaps of shape {list(cand.shape)} "
                              f"({'finite' if np.isfinite(cand).all() else 'not finite'}), expected {list(want)}")
    if source is None:
        figures: dict[str, Any] = {"crops": len(eval_set)}
        attempt = Attempt(Mitigation(UNJUDGED), figures=figures)
        section = {"judged": False, "passed": None, "degraded": False, "reference": None,
                   "note": "packaged as is, not judged: no source to compare with (convert --reference SOURCE, or "
                           "edge-pose validate BUNDLE --reference SOURCE, judges it)",
                   "checked": f"runs on the CPU ({FORMATS[fmt].backend}) and gives finite heatmaps "
                              f"{list(want[1:])} on {len(eval_set)} crops",
                   "evaluation": eval_set.describe()}
        return section, figures, GuardOutcome(attempt, [attempt], degraded=False)
    from calibration.inference import heatmaps_on

    ref = heatmaps_on(source.run, source.input, eval_set, batch=8, desc="reference (source)")
    if ref.shape != cand.shape:
        raise ConversionError(f"{reference}: heatmaps {list(ref.shape[1:])} do not match the packaged file's "
                              f"{list(cand.shape[1:])}")
    figures = compare(ref, cand, ready.input.size, eval_set, ready.keypoints)
    failed = thresholds.check(precision, figures)
    attempt = Attempt(Mitigation(PACKAGED), figures=figures, failed=failed)
    outcome = GuardOutcome(attempt, [attempt], degraded=bool(failed))
    if failed and not allow_degraded:
        raise GuardFailed(f"{fmt}/{precision} packaged as is misses the fidelity thresholds against {reference}: "
                          f"{'; '.join(failed)} (packaging has nothing to mitigate: convert the source instead, or "
                          f"--allow-degraded keeps it marked degraded)", outcome)
    section = {**figures, "judged": True, "passed": not failed, "degraded": bool(failed), "missed": failed,
               "mitigation": PACKAGED, "thresholds": thresholds.to_json(),
               "reference": f"source ({source.kind}) {reference}", "evaluation": eval_set.describe(),
               "attempts": outcome.report()["attempts"]}
    return section, figures, outcome


def package_pose(model_path, out_dir, *, checkpoint=None, device: str | None = None, formats=(), precisions=(),
                 calib=None, images=None, boxes=None, detector: str | None = None, min_box_score: float = 0.3,
                 calib_size: int = 64, eval_data=None, eval_size: int | None = None, facts: dict | None = None,
                 thresholds: Thresholds | None = None, allow_degraded: bool = False, seed: int = 0,
                 log: Callable[[str], None] = _stderr, reference=None) -> list[Converted]:
    """One bundle of the ready file at OUT/<model>-<format>-<precision>; ConversionError (one line) on bad input,
    GuardFailed when a reference is given and the file misses its precision's thresholds. Takes convert()'s
    arguments; `boxes` and `calib_size` choose calibration crops, which packaging has no use for."""
    from calibration.plan import calibration_and_eval

    if checkpoint is not None:
        raise SourceError(f"{model_path}: --checkpoint applies to zoo models only; the model file carries its "
                          f"weights")
    log(f"[1/3] reading {model_path} (packaged as is, not converted)")
    ready = read_ready(model_path, **{k: v for k, v in (facts or {}).items() if v is not None})
    _check_targets(ready, formats, precisions)
    source = None
    if reference is not None:  # before any work: a reference that cannot be read is one line now
        log(f"  reference: {reference}")
        source = _reference(reference, ready)
    log(f"  {ready.format}/{ready.precision}: {ready.input.name} {ready.input.layout} {ready.input.size} -> "
        f"{ready.output.name} {ready.output.layout} {ready.output.size}, {len(ready.keypoints.names)} keypoints")
    # nothing is calibrated: every crop of --calib (or --eval) serves to run, and judge, the file
    log(f"[2/3] crops to run it on ({ready.input.height}x{ready.input.width})")
    _, eval_set = calibration_and_eval(ready.input.size, None, eval_data or calib, images, None, 1, eval_size, seed,
                                       detector, min_box_score)
    log(f"  {len(eval_set)} crops{f': {eval_set.note}' if eval_set.kind == 'generated' else ''}")
    work = Path(tempfile.mkdtemp(prefix="edge-pose-package-"))
    try:
        staged = write_bundle(work / "bundle", _manifest(ready, device, eval_set.describe(), seed), ready.files)
        section, figures, outcome = _judge(staged, ready, reference, source, eval_set, thresholds or Thresholds(),
                                           allow_degraded, log)
        manifest = staged.manifest
        manifest.fidelity = section
        name = bundle_name(ready.model_name, ready.format, ready.precision)
        bundle = write_bundle(Path(out_dir) / name, manifest, {n: staged.path / n for n in manifest.files})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"  wrote {bundle.path} ({outcome.chosen.mitigation.label}"
        f"{f', judged against {reference}' if reference else ''})")
    row = {"bundle": name, "precision": ready.precision, **figures, "passed": section["passed"]}
    return [Converted(bundle, figures, outcome, row)]

"""The conversion pipeline: source -> crops -> for each (format, precision): export into a temporary directory,
stage a bundle, run it through the runtime's own backend, compare with the source on evaluation crops (the guard
tries mitigations for int8), then write the final bundle atomically into OUT/<model>-<format>-<precision>.

Everything before the final `write_bundle` happens in a private temporary directory that is removed on success and
failure alike, so a failed or interrupted conversion never leaves a directory in OUT that looks like a bundle.
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from calibration.fidelity import Thresholds, compare
from calibration.inference import heatmaps_on, model_inputs
from converters.errors import ConversionError, RuntimeRefused
from converters.guard import REWRITES, Attempt, GuardOutcome, Mitigation, run_guard
from converters.manifest_build import build_manifest, devices_for
from converters.targets import CALIBRATED, resolve_targets
from edge_pose.bundle import Bundle, load_bundle, write_bundle
from edge_pose.errors import EdgePoseError
from registry import FORMATS, load


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Converted:
    """One written bundle with its fidelity figures and what the guard did."""

    bundle: Bundle
    figures: dict[str, Any]
    outcome: GuardOutcome
    row: dict[str, Any] = field(default_factory=dict)


def bundle_name(model: str, fmt: str, precision: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-") or "model"
    return f"{safe}-{fmt}-{precision}"


def _export(fmt: str, source, precision: str, out: Path, calib_inputs, blob_device, options: dict):
    """The registry's exporter for `fmt`; every exporter takes the same arguments."""
    exporter = load(FORMATS[fmt].exporter)
    return exporter(source, precision, out, calib_inputs=calib_inputs, blob_device=blob_device, **options)


def open_as_device(bundle_path: Path, fmt: str | None = None):
    """The bundle loaded by the runtime exactly as a device would run it: the format's default backend on the CPU,
    compiled with the manifest's execution precision (the backend refuses to compute in another), degraded or not.
    The guard, `validate` and the runtime share this one path."""
    from edge_pose.select import open_best

    entry = FORMATS[fmt or load_bundle(bundle_path).manifest.format]
    return open_best(bundle_path, backend=entry.backend, accelerator=entry.accelerator, allow_degraded=True,
                     records=False)


def candidate_heatmaps(bundle_path: Path, eval_set, fmt: str | None = None):
    """Heatmaps of a bundle on the evaluation crops, run by the runtime exactly as a device would (CPU)."""
    try:
        loaded = open_as_device(bundle_path, fmt)
    except EdgePoseError as exc:  # the runtime refuses the model: a failed attempt for the guard
        raise RuntimeRefused(f"{bundle_path.name}: the runtime refuses it: {exc}") from None
    if not loaded.chosen.requested:  # the format's own backend refused it: judging another runtime proves nothing
        raise RuntimeRefused(f"{bundle_path}: cannot run as a device would: {loaded.plan.candidates[0].reason}")
    return heatmaps_on(loaded.session.infer, loaded.bundle.manifest.input, eval_set), loaded.bundle.manifest


class Conversion:
    """State shared by every target of one conversion: source, crops, reference heatmaps, work directory."""

    def __init__(self, source, calib_set, eval_set, work: Path, thresholds: Thresholds, seed: int,
                 device: str | None, blob_device: str | None, log: Callable[[str], None],
                 make_variant: Callable[[str], Any] | None = None):
        self.source, self.calib_set, self.eval_set, self.work = source, calib_set, eval_set, work
        self.make_variant, self.variants = make_variant, {}  # graph form -> the same model built that way
        self.thresholds, self.seed, self.device, self.blob_device, self.log = thresholds, seed, device, blob_device, log
        self.calib_inputs = model_inputs(calib_set, source.input) if calib_set is not None else None
        started = time.perf_counter()
        self.reference = heatmaps_on(source.run, source.input, eval_set, batch=8, desc="reference (source)")
        self.log(f"  reference heatmaps of the source on {len(eval_set)} evaluation crops "
                 f"({time.perf_counter() - started:.1f} s)")
        self.counter = 0
        self.rewritten: dict[str, Any] = {}  # rewrite name -> rewritten source (made once, on first use)

    def source_for(self, rewrite: str | None, fmt: str | None = None, precision: str | None = None):
        """The source, its float-exact rewrite for a guard mitigation (ConversionError when it does not apply), or
        the same zoo model in the graph form its entry names for this target (built once)."""
        form = self._graph_form(fmt, precision) if rewrite is None else None
        if form is not None:
            if form not in self.variants:
                self.log(f"  {fmt}/{precision}: building {self.source.model_name} in its {form!r} graph form "
                         "(the same function, faster on this target)")
                self.variants[form] = self.make_variant(form)
            return self.variants[form]
        if rewrite is None:
            return self.source
        if rewrite not in self.rewritten:
            made = REWRITES[rewrite].make(self.source, self.work / f"rewrite-{rewrite}")
            if made is None:
                raise ConversionError(f"{self.source.model_name}: rewrite {rewrite} does not apply to this model")
            self.log(f"  rewrite: {made.rewrite_note}")
            self.rewritten[rewrite] = made
        return self.rewritten[rewrite]

    def _graph_form(self, fmt, precision) -> str | None:
        if self.make_variant is None or fmt is None or self.source.kind != "keras":
            return None
        from converters.zoo import ZOO

        entry = ZOO.get(self.source.model_name)
        return entry.graph_form(fmt, precision) if entry is not None else None

    def attempt(self, fmt: str, precision: str, mitigation: Mitigation) -> Attempt:
        self.counter += 1
        built = mitigation.precision or precision
        out = self.work / f"export-{self.counter}"
        out.mkdir()
        self.log(f"  {fmt}/{precision}: exporting ({mitigation.label})")
        try:  # a mitigation the exporter or the runtime refuses is a failed attempt, not a failed conversion
            source = self.source_for(mitigation.rewrite, fmt, built)
            result = _export(fmt, source, built, out, self.calib_inputs, self.blob_device, mitigation.options)
            if mitigation.rewrite:
                result.notes.insert(0, source.rewrite_note)
            manifest = build_manifest(
                self.source, result, devices=devices_for(fmt, built, self.device),
                calibration=self.calib_set.describe() if self.calib_set is not None and built in CALIBRATED else None,
                evaluation=self.eval_set.describe(), seed=self.seed)
            staged = write_bundle(self.work / f"stage-{self.counter}" / "bundle", manifest, result.files)
            self.log(f"  {fmt}/{precision}: checking fidelity on {len(self.eval_set)} crops")
            cand, _ = candidate_heatmaps(staged.path, self.eval_set, fmt)
        except EdgePoseError as exc:
            refused = isinstance(exc, RuntimeRefused) and precision == "int8"  # the ladder may get past it
            if mitigation.options or mitigation.precision or mitigation.rewrite or refused:
                return Attempt(mitigation, error=str(exc))
            raise
        figures = compare(self.reference, cand, self.source.input.size, self.eval_set, self.source.keypoints,
                          decode_method=self.source.decode.method, blur_kernel=self.source.decode.blur_kernel)
        return Attempt(mitigation, figures=figures, failed=self.thresholds.check(precision, figures),
                       payload=(result, staged))

    def finish(self, fmt: str, precision: str, outcome: GuardOutcome, out_dir: Path) -> Converted:
        result, staged = outcome.chosen.payload
        manifest = staged.manifest
        figures = outcome.chosen.figures
        manifest.fidelity = {
            **figures, "passed": not outcome.degraded, "degraded": outcome.degraded,
            "missed": list(outcome.chosen.failed or []),
            "mitigation": outcome.chosen.mitigation.label, "thresholds": self.thresholds.to_json(),
            "reference": f"source ({self.source.kind})", "evaluation": self.eval_set.describe(),
            "attempts": outcome.report()["attempts"],
        }
        name = bundle_name(self.source.model_name, fmt, precision)
        files = {n: staged.path / n for n in manifest.files}
        bundle = write_bundle(out_dir / name, manifest, files)
        self.log(f"  {fmt}/{precision}: wrote {bundle.path} ({outcome.chosen.mitigation.label})")
        row = {"bundle": name, "precision": manifest.precision, **figures, "passed": not outcome.degraded}
        return Converted(bundle, figures, outcome, row)


def convert(source_ref, out_dir, *, checkpoint=None, device: str | None = None, formats=(), precisions=(),
            calib=None, images=None, boxes=None, detector: str | None = None, min_box_score: float = 0.3,
            calib_size: int = 64, eval_data=None, eval_size: int | None = None,
            facts: dict | None = None, thresholds: Thresholds | None = None, allow_degraded: bool = False,
            seed: int = 0, log: Callable[[str], None] = _stderr) -> list[Converted]:
    """Convert one source into one bundle per target; returns them in order. Raises ConversionError (one line)."""
    from calibration.plan import calibration_and_eval
    from converters.sources import load_source

    targets, notes, blob_device = resolve_targets(formats, precisions, device, have_calibration=calib is not None)
    for note in notes:
        log(f"note: {note}")
    out_dir = Path(out_dir)
    log(f"[1/3] loading source {source_ref}")
    source = load_source(source_ref, checkpoint=checkpoint, seed=seed, **{k: v for k, v in (facts or {}).items()
                                                                          if v is not None})
    log(f"  {source!r}")
    log(f"[2/3] crops for calibration and evaluation ({source.input.height}x{source.input.width})")
    calib_set, eval_set = calibration_and_eval(source.input.size, calib, eval_data, images, boxes, calib_size,
                                               eval_size, seed, detector, min_box_score)
    log(f"  calibration: {len(calib_set) if calib_set is not None else 0} crops; evaluation: {len(eval_set)} crops"
        f"{' with ground truth' if eval_set.has_ground_truth else ''}"
        f"{f': {eval_set.note}' if eval_set.kind == 'generated' else ''}")
    work = Path(tempfile.mkdtemp(prefix="edge-pose-convert-"))
    done: list[Converted] = []
    try:
        def variant(form):
            return load_source(source_ref, checkpoint=checkpoint, seed=seed, for_format=form,
                               **{k: v for k, v in (facts or {}).items() if v is not None})

        pipe = Conversion(source, calib_set, eval_set, work, thresholds or Thresholds(), seed, device, blob_device,
                          log, make_variant=variant)
        for i, (fmt, precision) in enumerate(targets, 1):
            log(f"[3/3] target {i}/{len(targets)}: {fmt}/{precision}")
            outcome = run_guard(fmt, precision, source, lambda m, f=fmt, p=precision: pipe.attempt(f, p, m),
                                allow_degraded=allow_degraded, log=log)
            done.append(pipe.finish(fmt, precision, outcome, out_dir))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done

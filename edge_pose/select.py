"""Choosing how to run: bundles present x device profile x installed runtimes -> an ordered plan, first that works.

Every candidate the plan holds says why it was chosen, skipped, failed or not needed, so `edge-pose explain` can
show a user exactly what happened on their device. "Works" means it loads with the execution precision it was
validated at and passes a one-inference self-check (finite heatmaps of the manifest's shape from a neutral input),
because a delegate can load and still produce junk.

Order: explicit requests first; then, when `edge-pose bench --record` measured these bundles on this device with
these runtime versions, the measured candidates by their recorded p50; then the device profile's preferences.
Bundles the guard kept as degraded are skipped unless allowed. A ready file packaged as is and never judged against a
source (`Manifest.judged` False) may run, after any judged bundle of the same format and precision, and its reason
says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.profiles import Preference, Profile, ProfileError, get_profile, load_profile, load_profiles
from edge_pose.backends.base import BackendUnavailable, NotAsAsked
from edge_pose.backends.imports import one_line
from edge_pose.backends.tensors import DTYPES, input_shape
from edge_pose.bundle import Bundle, BundleError, resolve_bundles
from edge_pose.errors import EdgePoseError
from registry import normalise_accelerator

CHOSEN, SKIPPED, FAILED, STANDBY = "chosen", "skipped", "failed", "standby"


class DeviceError(EdgePoseError, ValueError):
    """A device profile that is unknown or invalid."""


class NothingRuns(EdgePoseError, RuntimeError):
    """No candidate of the plan could run here; the message lists why, in one line."""


@dataclass
class Candidate:
    bundle: Bundle | None  # None: a profile preference no bundle provides, or a bundle that was refused
    name: str  # bundle directory name (or "-")
    format: str
    precision: str
    backend: str
    accelerator: str
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    status: str = STANDBY
    reason: str = ""
    refused: bool = False  # failed because the bundle itself is wrong (not because this device lacks something)
    p50_ms: float | None = None  # recorded by `bench --record` on this device, when a valid record exists
    requested: bool = False

    def label(self) -> str:
        return f"{self.format}/{self.precision} on {self.backend}:{self.accelerator}"

    def key(self) -> tuple:
        """How bench records name this candidate."""
        return (self.name, self.backend, self.accelerator, self.threads)

    def to_json(self) -> dict[str, Any]:
        return {"bundle": self.name, "format": self.format, "precision": self.precision, "backend": self.backend,
                "accelerator": self.accelerator, "threads": self.threads, "status": self.status,
                "reason": self.reason, "recorded_p50_ms": self.p50_ms,
                "validated_precision": self.bundle.manifest.execution_precision if self.bundle else None}


@dataclass
class Plan:
    profile: Profile
    detected: list[str]  # why this profile (detection reasons, or "named")
    candidates: list[Candidate]
    ranking: str = "by the profile's preferences"
    notes: list[str] = field(default_factory=list)


@dataclass
class Loaded:
    bundle: Bundle
    session: Any
    plan: Plan
    chosen: Candidate


def _backends():
    from edge_pose.backends.registry import BACKENDS  # adapters import nothing heavy; keep edge_pose light anyway

    return BACKENDS


def resolve_profile(device: str = "auto") -> tuple[Profile, list[str]]:
    """The named profile (or a profile .toml file), or the detected one; with the reasons."""
    try:
        if device in (None, "", "auto"):
            from devices.detect import detect

            d = detect()
            return d.profile, [f"detected: {r}" for r in d.reasons]
        if device.endswith(".toml"):  # a profile file not (yet) installed in a profiles directory
            return load_profile(device), [f"from file {device}"]
        return get_profile(device, load_profiles()), [f"named: --device {device}"]
    except ProfileError as exc:
        raise DeviceError(str(exc)) from None


def gather_bundles(path, task: str = "pose") -> tuple[list[Bundle], list[Candidate]]:
    """Bundles of `task` at `path` (edge_pose.bundle.resolve_bundles: one rule everywhere); refused ones as
    candidates."""
    resolved = resolve_bundles(path, task=task)
    refused = [Candidate(None, r.path.name, "?", "?", "-", "-", status=SKIPPED, reason=f"refused: {r.reason}",
                         refused=True) for r in resolved.refused]
    return resolved.bundles, refused


def _from_preference(pref: Preference, bundle: Bundle | None, threads: int | None) -> Candidate:
    opts: dict[str, Any] = {}
    if pref.delegate:
        opts["delegate"] = pref.delegate
    if pref.delegate_options:
        opts["delegate_options"] = dict(pref.delegate_options)
    if pref.config:
        opts["config"] = dict(pref.config)
    t = threads or pref.threads
    if t:
        opts["threads"] = t
    return Candidate(bundle, bundle.path.name if bundle else "-", pref.format, pref.precision, pref.backend,
                     pref.accelerator, t, opts)


def build_plan(bundles: list[Bundle], profile: Profile, backend: str | None = None, accelerator: str | None = None,
               threads: int | None = None, delegate: str | None = None, allow_degraded: bool = False,
               allow_precision=()) -> list[Candidate]:
    """Ordered candidates with reasons: explicit requests first, then the profile's preferences x bundles.

    A request (backend, accelerator, delegate) is tried first but is not a requirement: when it cannot run here
    (no NPU, no such delegate) the profile's own order follows, and the plan says why the request failed.
    """
    backends = _backends()
    if backend is not None and backend not in backends:
        raise BackendUnavailable(f"unknown backend {backend!r} (known: {', '.join(backends)})")
    plan: list[Candidate] = []
    used: set[int] = set()
    for pref in profile.prefer:
        matching = [b for b in bundles if (b.manifest.format, b.manifest.precision) == (pref.format, pref.precision)]
        matching.sort(key=lambda b: not b.manifest.judged)  # a bundle judged against its source before one never judged
        if not matching:
            c = _from_preference(pref, None, threads)
            c.status, c.reason = SKIPPED, f"no {pref.format}/{pref.precision} bundle here"
            plan.append(c)
        for b in matching:
            used.add(id(b))
            plan.append(_from_preference(pref, b, threads))
    for b in bundles:
        if id(b) not in used:
            fmt, prec = b.manifest.format, b.manifest.precision
            loadable = any(fmt in be.formats for be in backends.values())
            why = f"{fmt}/{prec} is not in profile {profile.name}'s preferences" if loadable else \
                f"no backend loads {fmt} bundles"
            plan.append(Candidate(b, b.path.name, fmt, prec, "-", "-", status=SKIPPED, reason=why))
    if delegate:  # a named delegate library is where this device's GPU/external delegate lives
        for c in plan:
            if c.backend == "litert" and c.accelerator in ("gpu", "delegate") and c.status != SKIPPED:
                c.options["delegate"] = delegate
    delegate_used = delegate and any("delegate" in c.options for c in plan if c.status != SKIPPED)
    if backend or accelerator or (delegate and not delegate_used):
        plan = _requested(plan, backends, backend, accelerator, threads, delegate) + plan
    if allow_precision:
        for c in plan:
            c.options["allow_precision"] = tuple(allow_precision)
    if not allow_degraded:
        for c in plan:
            if c.bundle is not None and c.bundle.manifest.degraded and c.status != SKIPPED:
                missed = "; ".join(c.bundle.manifest.fidelity.get("missed", []) or []) or "below its thresholds"
                c.status, c.reason = SKIPPED, (f"degraded: the guard kept it although it missed its fidelity bar "
                                               f"({missed}); --allow-degraded to use it")
    return _precheck(plan, backends)


def _requested(plan, backends, backend, accelerator, threads, delegate) -> list[Candidate]:
    """Candidates for an explicit request, in the profile's bundle order (bundles it does not list last)."""
    order = [c.bundle for c in plan if c.bundle is not None]
    order = [b for i, b in enumerate(order) if all(b is not o for o in order[:i])]
    out = []
    for b in order:
        for name, be in backends.items():
            if b.manifest.format not in be.formats or (backend and name != backend):
                continue
            if delegate and not accelerator and not backend and name != "litert":
                continue  # a delegate is a LiteRT thing
            acc = normalise_accelerator(name, accelerator) if accelerator else None
            if accelerator and acc is None:
                continue  # e.g. NPU asked: litert has none, so the request means OpenVINO only
            if acc is None:
                acc = "delegate" if (delegate and name == "litert") else ("cpu" if name == "litert" else "CPU")
            opts: dict[str, Any] = {"threads": threads} if threads else {}
            if delegate and name == "litert" and acc in ("gpu", "delegate"):
                opts["delegate"] = delegate
            out.append(Candidate(b, b.path.name, b.manifest.format, b.manifest.precision, name, acc, threads, opts,
                                 reason="requested", requested=True))
    if not out:
        what = ", ".join(f"{k}={v}" for k, v in (("backend", backend), ("accelerator", accelerator),
                                                 ("delegate", delegate)) if v)
        out.append(Candidate(None, "-", "-", "-", backend or "-", accelerator or "-", status=SKIPPED,
                             reason=f"requested {what}: no bundle here can run that way"))
    return out


def _precheck(plan: list[Candidate], backends: dict) -> list[Candidate]:
    """Drop repeats; skip, without loading anything, what cannot work here (runtime or accelerator absent)."""
    seen, kept = set(), []
    for c in plan:
        key = (id(c.bundle), c.format, c.precision, c.backend, c.accelerator, c.threads,
               repr(sorted(c.options.items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(c)
        if c.status == SKIPPED:
            continue
        be = backends[c.backend]
        why = be.available()
        if why is None:
            try:
                why = be.accelerator_absent(c.accelerator, c.options)
            except Exception as exc:  # noqa: BLE001 - a runtime that cannot even list devices
                why = f"{c.backend} cannot list its devices: {exc}"
        if why:
            c.status, c.reason = SKIPPED, why
    return kept


def neutral_input(bundle: Bundle) -> np.ndarray:
    """The mean image in model space: zeros after normalisation, the zero point for integer inputs."""
    spec = bundle.manifest.input
    fill = spec.quantization.zero_point if spec.quantization else 0
    return np.full(input_shape(bundle.manifest), fill, dtype=DTYPES[spec.dtype])


def self_check(session, bundle: Bundle) -> str | None:
    """None when one inference gives finite heatmaps of the manifest's shape, else why not."""
    m = bundle.manifest
    if m.task == "detect":
        outs = session.run(neutral_input(bundle))
        if not all(np.isfinite(np.asarray(o, np.float64)).all() for o in outs):
            return "self-check: detector outputs are not finite"
        return None
    want = (1, len(m.keypoints.names), *m.output.size)
    out = session.infer(neutral_input(bundle))
    if out.shape != want:
        return f"self-check: heatmaps of shape {out.shape}, expected {want}"
    if out.dtype != np.float32 or not np.isfinite(out).all():
        return "self-check: heatmaps are not finite float32"
    return None


def try_plan(plan: list[Candidate]) -> tuple[Candidate, Any] | tuple[None, None]:
    """Load candidates in order; the first that passes the self-check is chosen, the rest stay on standby."""
    backends = _backends()
    winner = None
    for c in plan:
        if c.status == SKIPPED:
            continue
        if winner is not None:
            c.status, c.reason = STANDBY, "not tried: an earlier candidate runs"
            continue
        try:
            session = backends[c.backend].load(c.bundle, c.accelerator, c.options)
        except NotAsAsked as exc:  # it would run, but not as validated or asked: skipped, never run under its name
            c.status, c.reason = SKIPPED, str(exc)
            continue
        except (BackendUnavailable, BundleError) as exc:
            c.status, c.reason, c.refused = FAILED, str(exc), isinstance(exc, BundleError)
            continue
        try:
            problem = self_check(session, c.bundle)
        except Exception as exc:  # noqa: BLE001 - a delegate that loads but cannot run is a fallback, not a crash
            problem = f"self-check: {type(exc).__name__}: {one_line(exc)}"
        if problem:
            c.status, c.reason = FAILED, problem
            continue
        c.status = CHOSEN
        c.reason = "loaded; self-check passed" + (f"; fastest recorded here ({c.p50_ms:.2f} ms p50)"
                                                   if c.p50_ms is not None else "")
        if not c.bundle.manifest.judged:
            c.reason += "; packaged as is: its fidelity was never judged against a source"
        winner = (c, session)
    return winner or (None, None)


def rank_by_records(candidates: list[Candidate], bundles: list[Bundle], profile: Profile) -> tuple[str, list[str]]:
    """Reorder, in place, the candidates after any explicit request: measured ones by recorded p50 first, then the
    rest in the profile's order. Returns (how the plan is ranked, notes)."""
    from edge_pose.records import device_id, lookup

    found = lookup(bundles, device_id(profile.name))
    for c in candidates:
        hit = found.p50.get(c.key())
        if hit is not None and c.bundle is not None:
            c.p50_ms = hit[0]
    head = [c for c in candidates if c.requested]
    rest = [c for c in candidates if not c.requested]
    measured = sorted((c for c in rest if c.p50_ms is not None and c.status != SKIPPED), key=lambda c: c.p50_ms)
    if not measured:
        return "by the profile's preferences (no bench record for this device)", found.notes
    others = [c for c in rest if not any(c is m for m in measured)]
    candidates[:] = head + measured + others
    files = sorted({found.p50[c.key()][1] for c in measured})
    return f"by recorded p50 on this device ({', '.join(files)}), then the profile's preferences", found.notes


def open_best(path, device: str = "auto", backend: str | None = None, accelerator: str | None = None,
              threads: int | None = None, delegate: str | None = None, allow_degraded: bool = False,
              allow_precision=(), records: bool = True, task: str = "pose") -> Loaded:
    """The best way to run the bundle(s) at `path` on this device, loaded and checked, with the whole plan.

    allow_degraded: bundles the guard kept below their bar may be chosen. allow_precision: execution precisions
    (f16, bf16, f32) accepted where a device cannot compute in the validated one. records: rank by bench records.
    """
    profile, why = resolve_profile(device)
    bundles, refused = gather_bundles(path, task)
    candidates = build_plan(bundles, profile, backend, accelerator, threads, delegate, allow_degraded,
                            allow_precision)
    ranking, notes = rank_by_records(candidates, bundles, profile) if records else ("by the profile's "
                                                                                     "preferences", [])
    candidates += refused
    plan = Plan(profile, why, candidates, ranking, notes)
    chosen, session = try_plan(candidates)
    if chosen is None:
        refusals = [c.reason for c in candidates if c.refused]
        if refusals:  # the bundle is wrong: say that, not "no backend"
            raise BundleError(refusals[0])
        tried = [f"{c.name} {c.label()}: {c.reason}" for c in candidates if c.bundle is not None]
        where = path.path if isinstance(path, Bundle) else path
        err = NothingRuns(f"nothing in {where} runs on {profile.name}: " + "; ".join(tried or ["no candidates"]))
        err.plan = plan
        raise err
    return Loaded(chosen.bundle, session, plan, chosen)

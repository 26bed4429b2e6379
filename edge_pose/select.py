"""Choosing how to run: bundles present x device profile x installed runtimes -> an ordered plan, first that works.

Every candidate the plan holds says why it was chosen, skipped, failed or not needed, so `edge-pose explain` can
show a user exactly what happened on their device. "Works" means it loads and passes a one-inference self-check
(finite heatmaps of the manifest's shape from a neutral input), because a delegate can load and still produce junk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.profiles import Preference, Profile, ProfileError, get_profile, load_profile, load_profiles
from edge_pose.backends.base import BackendUnavailable
from edge_pose.backends.imports import one_line
from edge_pose.backends.tensors import DTYPES, input_shape
from edge_pose.bundle import Bundle, BundleError, is_bundle, load_bundle
from edge_pose.errors import EdgePoseError

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

    def label(self) -> str:
        return f"{self.format}/{self.precision} on {self.backend}:{self.accelerator}"

    def to_json(self) -> dict[str, Any]:
        return {"bundle": self.name, "format": self.format, "precision": self.precision, "backend": self.backend,
                "accelerator": self.accelerator, "threads": self.threads, "status": self.status,
                "reason": self.reason}


@dataclass
class Plan:
    profile: Profile
    detected: list[str]  # why this profile (detection reasons, or "named")
    candidates: list[Candidate]


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


def gather_bundles(path) -> tuple[list[Bundle], list[Candidate]]:
    """Bundles at `path` (a bundle, a directory of bundles, a Bundle or a list); refused ones become candidates.

    A single bundle that fails verification is an error; in a directory it is shown as refused and the others
    still compete.
    """
    if isinstance(path, Bundle):
        return [path], []
    if isinstance(path, (list, tuple)):
        return list(path), []
    path = Path(path)
    if is_bundle(path):
        return [load_bundle(path)], []
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle or directory")
    good, refused = [], []
    for sub in sorted(p for p in path.iterdir() if is_bundle(p)):
        try:
            good.append(load_bundle(sub))
        except BundleError as exc:
            refused.append(Candidate(None, sub.name, "?", "?", "-", "-", status=SKIPPED, reason=f"refused: {exc}",
                                     refused=True))
    if not good and refused:
        raise BundleError(refused[0].reason.removeprefix("refused: "))
    if not good:
        raise BundleError(f"{path}: no bundle (no subdirectory holds edge_pose.json)")
    return good, refused


def _accelerator_for(backend: str, accelerator: str) -> str | None:
    """A requested accelerator in the backend's own spelling, or None when the backend has no such thing."""
    if backend == "litert":
        acc = accelerator.lower()
        return acc if acc in ("cpu", "gpu", "delegate") else None
    acc = accelerator.upper()
    return acc if acc.split(":")[0] in ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI") else None


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
               threads: int | None = None, delegate: str | None = None) -> list[Candidate]:
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
            acc = _accelerator_for(name, accelerator) if accelerator else None
            if accelerator and acc is None:
                continue  # e.g. NPU asked: litert has none, so the request means OpenVINO only
            if acc is None:
                acc = "delegate" if (delegate and name == "litert") else ("cpu" if name == "litert" else "CPU")
            opts: dict[str, Any] = {"threads": threads} if threads else {}
            if delegate and name == "litert" and acc in ("gpu", "delegate"):
                opts["delegate"] = delegate
            out.append(Candidate(b, b.path.name, b.manifest.format, b.manifest.precision, name, acc, threads, opts,
                                 reason="requested"))
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
        c.status, c.reason = CHOSEN, "loaded; self-check passed"
        winner = (c, session)
    return winner or (None, None)


def open_best(path, device: str = "auto", backend: str | None = None, accelerator: str | None = None,
              threads: int | None = None, delegate: str | None = None) -> Loaded:
    """The best way to run the bundle(s) at `path` on this device, loaded and checked, with the whole plan."""
    profile, why = resolve_profile(device)
    bundles, refused = gather_bundles(path)
    candidates = build_plan(bundles, profile, backend, accelerator, threads, delegate) + refused
    plan = Plan(profile, why, candidates)
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

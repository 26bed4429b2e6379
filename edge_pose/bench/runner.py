"""Timed inference of one or more bundle variants, interleaved so that drift hits every variant alike."""
from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_pose.bench.stats import latency_stats, spread_warning
from edge_pose.bundle import Bundle, Refused, resolve_bundles


@dataclass
class Variant:
    """One bundle on one backend/accelerator with one thread count."""

    bundle: Bundle
    threads: int | None
    label: str
    loaded: Any = None
    source: str = ""  # the path the user gave (records are written beside its bundles)
    load_s: float = 0.0
    first_ms: float = 0.0
    times: list[float] = field(default_factory=list)
    error: str | None = None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def pin_cores(cores: list[int]) -> None:
    """Pin this process (and the runtime threads it starts afterwards) to the given cores."""
    from edge_pose.errors import EdgePoseError

    allowed = sorted(os.sched_getaffinity(0))
    missing = sorted(set(cores) - set(allowed))
    if missing:
        raise EdgePoseError(f"--pin {','.join(map(str, cores))}: no core {missing[0]} here (this process may use "
                            f"cores {','.join(map(str, allowed))})")
    os.sched_setaffinity(0, set(cores))


def sample_input(bundle: Bundle, seed: int = 0) -> np.ndarray:
    """A model-ready batch of one made from a fixed pseudo-random crop (latency does not depend on content)."""
    from edge_pose.preprocess import to_model_input

    spec = bundle.manifest.input
    crop = np.random.default_rng(seed).integers(0, 256, (1, spec.height, spec.width, 3), dtype=np.uint8)
    return to_model_input(crop, spec)


def make_variants(paths: list[str], threads: list[int | None]) -> tuple[list[Variant], list[Refused]]:
    """One variant per bundle and thread count; bad bundles in a directory are returned as refused."""
    variants, refused = [], []
    for path in paths:
        resolved = resolve_bundles(path)  # pose and detect bundles: both are measured and recorded
        refused += resolved.refused
        for bundle in resolved.bundles:
            for t in threads:
                label = f"{bundle.path.name}" + (f"@{t}t" if t else "")
                variants.append(Variant(bundle=bundle, threads=t, label=label, source=str(path)))
    return variants, refused


def load_variant(v: Variant, options: dict) -> None:
    """Open the variant's bundle as the selector would (degraded bundles too: bench measures what it is given)."""
    from edge_pose.select import open_best

    t0 = time.perf_counter()
    v.loaded = open_best(v.bundle, **{**options, "threads": v.threads, "allow_degraded": True, "records": False,
                                      "task": v.bundle.manifest.task})
    v.load_s = time.perf_counter() - t0


def run_interleaved(variants: list[Variant], runs: int, warmup: int, progress=None) -> None:
    """Warm every variant up, then time one inference of each in turn (A B A B ...), `runs` rounds."""
    inputs = {id(v): sample_input(v.bundle) for v in variants}
    run = {id(v): v.loaded.session.run if v.bundle.manifest.task == "detect" else v.loaded.session.infer
           for v in variants}
    for v in variants:
        x = inputs[id(v)]
        t0 = time.perf_counter()
        run[id(v)](x)
        v.first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            run[id(v)](x)
    for i in range(runs):
        for v in variants:
            x = inputs[id(v)]
            t0 = time.perf_counter()
            run[id(v)](x)
            v.times.append(time.perf_counter() - t0)
        if progress:
            progress(i + 1, runs)


def variant_result(v: Variant) -> dict[str, Any]:
    m = v.bundle.manifest
    result = {
        "label": v.label,
        "bundle": str(v.bundle.path),
        "model": m.model.get("name"),
        "task": m.task,
        "format": m.format,
        "precision": m.precision,
        "input_size": [m.input.height, m.input.width],
        "threads_requested": v.threads,
    }
    if v.error:
        result["error"] = v.error
        return result
    stats = latency_stats(v.times)
    result.update({
        "runtime": v.loaded.session.describe(),
        "load_s": v.load_s,
        "first_inference_ms": v.first_ms,
        "latency": stats,
        "warning": spread_warning(stats, v.label),
    })
    return result



def record(variants: list[Variant], profile: str, target: str | None = None) -> list[str]:
    """Store the measured p50 of every variant where the selector finds it; returns the files written."""
    from pathlib import Path

    from edge_pose import records

    device = records.device_id(profile)
    by_file: dict[Path, list] = {}
    for v in variants:
        if v.error or not v.times:
            continue
        c = v.loaded.chosen
        if target:
            path = Path(target) / records.FILENAME if Path(target).is_dir() or not Path(target).suffix \
                else Path(target)
        else:
            path = v.bundle.path.parent / records.FILENAME
        by_file.setdefault(path, []).append(records.Entry(
            v.bundle.path.name, records.model_hash(v.bundle), c.backend, c.accelerator, c.threads,
            records.runtime_version(c.backend), round(latency_stats(v.times)["p50_ms"], 4), records.now()))
    return [str(records.write_entries(path, device, entries)) for path, entries in by_file.items()]

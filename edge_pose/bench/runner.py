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
from edge_pose.bundle import Bundle, find_bundles


@dataclass
class Variant:
    """One bundle on one backend/accelerator with one thread count."""

    bundle: Bundle
    threads: int | None
    label: str
    loaded: Any = None
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
    os.sched_setaffinity(0, set(cores))


def sample_input(bundle: Bundle, seed: int = 0) -> np.ndarray:
    """A model-ready batch of one made from a fixed pseudo-random crop (latency does not depend on content)."""
    from edge_pose.preprocess import to_model_input

    spec = bundle.manifest.input
    crop = np.random.default_rng(seed).integers(0, 256, (1, spec.height, spec.width, 3), dtype=np.uint8)
    return to_model_input(crop, spec)


def make_variants(paths: list[str], threads: list[int | None]) -> list[Variant]:
    variants = []
    for path in paths:
        for bundle in find_bundles(path):
            for t in threads:
                label = f"{bundle.path.name}" + (f"@{t}t" if t else "")
                variants.append(Variant(bundle=bundle, threads=t, label=label))
    return variants


def load_variant(v: Variant, device: str, backend: str | None, accelerator: str | None) -> None:
    from edge_pose.select import open_best

    t0 = time.perf_counter()
    v.loaded = open_best(v.bundle, device=device, backend=backend, accelerator=accelerator, threads=v.threads)
    v.load_s = time.perf_counter() - t0


def run_interleaved(variants: list[Variant], runs: int, warmup: int, progress=None) -> None:
    """Warm every variant up, then time one inference of each in turn (A B A B ...), `runs` rounds."""
    inputs = {id(v): sample_input(v.bundle) for v in variants}
    for v in variants:
        x = inputs[id(v)]
        t0 = time.perf_counter()
        v.loaded.session.infer(x)
        v.first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            v.loaded.session.infer(x)
    for i in range(runs):
        for v in variants:
            x = inputs[id(v)]
            t0 = time.perf_counter()
            v.loaded.session.infer(x)
            v.times.append(time.perf_counter() - t0)
        if progress:
            progress(i + 1, runs)


def variant_result(v: Variant) -> dict[str, Any]:
    m = v.bundle.manifest
    result = {
        "label": v.label,
        "bundle": str(v.bundle.path),
        "model": m.model.get("name"),
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


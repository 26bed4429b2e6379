"""Latency statistics that stay comparable across devices: percentiles, spread, throughput."""
from __future__ import annotations

import numpy as np

# A run whose middle 80% spans more than this fraction of its median is flagged: the numbers are not stable
# (thermal throttling, another process, frequency scaling) and comparisons against it are weak.
WIDE_SPREAD = 0.25


def latency_stats(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """Milliseconds: min, p50, p90, p99, max, mean, std; throughput in inferences per second; relative spread."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        raise ValueError("no timings")
    p10, p50, p90, p99 = np.percentile(ms, [10, 50, 90, 99])
    mean = float(ms.mean())
    return {
        "n": int(ms.size),
        "min_ms": float(ms.min()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(ms.max()),
        "mean_ms": mean,
        "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "throughput_per_s": 1e3 / mean if mean > 0 else float("inf"),
        "spread": float((p90 - p10) / p50) if p50 > 0 else 0.0,
    }


def spread_warning(stats: dict[str, float], label: str) -> str | None:
    if stats["spread"] > WIDE_SPREAD:
        return (f"{label}: wide spread (p10..p90 spans {stats['spread']:.0%} of p50); "
                "close other programs, check throttling, or pin cores")
    return None

"""Precisions: how a bundle's weights are stored, and the execution precision its float parts run at.

`name` is the bundle's precision (what the converter built); `execution` is what the guard validated the float
arithmetic at and what every backend must compile with: "f32", "f16" or "bf16" (for int8 models, the precision of
the parts that stay float). fp16 bundles store fp16 weights but are validated with f32 arithmetic, as CPUs run them;
a device that can only compute them in f16 (an NPU, a GPU by default) differs from what was validated and is a
skipped candidate unless the user allows that precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXECUTION = ("f32", "f16", "bf16")


@dataclass(frozen=True)
class PrecisionEntry:
    name: str
    execution: str  # the execution precision of its float parts, as validated
    calibrated: bool  # needs calibration data to build
    quantised: bool  # integer weights (calibration data helps even when not required)
    judged_as: str  # which fidelity thresholds the guard applies: "fp32", "fp16", "bf16" or "int8"
    label: str


PRECISIONS = {p.name: p for p in (
    PrecisionEntry("fp32", "f32", False, False, "fp32", "float32 weights and arithmetic"),
    PrecisionEntry("fp16", "f32", False, False, "fp16", "float16 weights, float32 arithmetic"),
    PrecisionEntry("bf16", "bf16", False, False, "bf16", "float32 weights, bfloat16 arithmetic (CPUs with native bf16)"),
    PrecisionEntry("dynamic", "f32", False, True, "int8", "int8 weights, float activations (dynamic range)"),
    PrecisionEntry("int8", "f32", True, True, "int8", "int8 weights and activations, float parts in float32"),
    PrecisionEntry("int16x8", "f32", True, True, "int8", "int16 activations, int8 weights (no XNNPACK kernels)"),
)}


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Native bf16 arithmetic on this x86 CPU (AVX512-BF16 or AMX-BF16), from the kernel's CPU flags."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})

"""What the user states about a model file, and how those statements combine with what the file itself says.

A file fixes some facts (tensor shapes, names); the user must state the rest (colour order, normalisation,
keypoints). Anything missing is reported in ONE line that lists every flag needed, so a user fixes it in one go.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from edge_pose.bundle import BundleError, InputSpec, KeypointSpec, OutputSpec
from edge_pose.keypoints import keypoint_spec

from converters.errors import SourceError

FLAG = {"input_size": "--input-size H,W", "layout": "--layout NCHW|NHWC", "color": "--color rgb|bgr",
        "mean": "--mean R,G,B", "std": "--std R,G,B", "keypoints": "--keypoints coco17|aic14|FILE",
        "output": "--output NAME"}


def _triple(value: Any, what: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if isinstance(value, (int, float)):
        value = [value]
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        raise SourceError(f"--{what} {value!r} is not three numbers R,G,B") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise SourceError(f"--{what} {value!r} is not three numbers R,G,B")
    if not all(math.isfinite(v) for v in vals):
        raise SourceError(f"--{what} {_show(vals)}: every value must be a finite number")
    return (vals[0], vals[1], vals[2])


def _show(vals) -> str:
    return ",".join(f"{v:g}" for v in vals)


def _check_units(what: str, vals: tuple[float, float, float] | None) -> None:
    """mean/std are in 0..255 units (what the runtime subtracts from uint8 pixels). Values all within 0..1 that are
    not just 0s and 1s (e.g. ImageNet's 0.485 or 0.229) are 0..1 units: refused with the converted values.
    0 and 1 stay valid: mean 0, std 1 is a model fed raw 0..255 pixels."""
    if vals is None or not all(0.0 <= v <= 1.0 for v in vals) or all(v in (0.0, 1.0) for v in vals):
        return
    scaled = ",".join(f"{v * 255:.6g}" for v in vals)
    raise SourceError(f"--{what} {_show(vals)} looks like 0..1 units; edge-pose takes mean and std in 0..255 "
                      f"units (of uint8 pixels): multiply by 255: --{what} {scaled}")


def _size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace("x", ",").split(",") if v]
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise SourceError(f"input size {value!r} is not H,W") from None
    if h <= 0 or w <= 0:
        raise SourceError(f"input size {value!r} must be positive")
    return (h, w)


@dataclass
class Facts:
    """User statements, normalised. None means 'not stated'."""

    input_size: tuple[int, int] | None = None
    layout: str | None = None
    color: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    keypoints: KeypointSpec | None = None
    output: str | None = None

    @classmethod
    def parse(cls, input_size=None, layout=None, color=None, mean=None, std=None, keypoints=None, output=None):
        if layout is not None:
            layout = str(layout).upper()
            if layout not in ("NCHW", "NHWC"):
                raise SourceError(f"layout {layout!r} is not NCHW or NHWC")
        if color is not None:
            color = str(color).lower()
            if color not in ("rgb", "bgr"):
                raise SourceError(f"colour order {color!r} is not rgb or bgr")
        std_t = _triple(std, "std")
        if std_t is not None and min(std_t) <= 0:
            raise SourceError(f"--std {_show(std_t)}: every value must be positive (it divides the pixels)")
        mean_t = _triple(mean, "mean")
        _check_units("mean", mean_t)
        _check_units("std", std_t)
        if keypoints is not None and not isinstance(keypoints, KeypointSpec):
            try:
                keypoints = keypoint_spec(str(keypoints))
            except BundleError as exc:
                raise SourceError(str(exc)) from None
        return cls(_size(input_size), layout, color, mean_t, std_t, keypoints,
                   str(output).split(":")[0] if output else None)


def missing_error(where: str, missing: Sequence[str], outputs: Sequence[str] = ()) -> SourceError:
    """One line listing every missing fact with its flag (and the candidate outputs when --output is missing)."""
    flags = " ".join(FLAG[m] for m in missing)
    hint = f" (candidate outputs: {', '.join(list(outputs)[:8])})" if "output" in missing and outputs else ""
    return SourceError(f"{where}: the file does not say {', '.join(m.replace('_', ' ') for m in missing)}; "
                       f"state them with {flags}{hint}")


def infer_layout(shape: Sequence[int | None]) -> str | None:
    """NCHW or NHWC from a 4-D image shape when exactly one of dims 1 and 3 is 3 channels; else None."""
    c1, c3 = shape[1] == 3, shape[3] == 3
    return "NCHW" if c1 and not c3 else "NHWC" if c3 and not c1 else None


def input_spec(where: str, name: str, shape: Sequence[int | None], facts: Facts,
               needs_normalisation: bool = True) -> tuple[InputSpec, list[str]]:
    """The InputSpec from the file's input shape plus the user's facts; returns it with the missing-fact list."""
    missing: list[str] = []
    if len(shape) != 4:
        raise SourceError(f"{where}: input {name!r} has shape {list(shape)}, not a 4-D image batch")
    layout = facts.layout or infer_layout(shape)
    if layout is None:
        missing.append("layout")
        layout = "NHWC"
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    c = shape[1] if layout == "NCHW" else shape[3]
    if c not in (3, None):
        raise SourceError(f"{where}: input {name!r} shape {list(shape)} read as {layout} has {c} channels, not 3")
    if h and w:
        if facts.input_size and facts.input_size != (h, w):
            raise SourceError(f"{where}: the file fixes input size {h},{w}; --input-size says "
                              f"{facts.input_size[0]},{facts.input_size[1]}")
    elif facts.input_size:
        h, w = facts.input_size
    else:
        missing.append("input_size")
        h, w = 1, 1
    if needs_normalisation:
        missing += [k for k in ("color", "mean", "std") if getattr(facts, k) is None]
    spec = InputSpec(name=name, height=int(h), width=int(w), layout=layout, dtype="float32",
                     color=facts.color or "rgb", mean=facts.mean or (0.0, 0.0, 0.0), std=facts.std or (1.0, 1.0, 1.0))
    return spec, missing


def choose_output(where: str, candidates: dict[str, Sequence[int | None]], facts: Facts) -> tuple[str, list[str]]:
    """The heatmap output: the one the user named, or the only candidate; else '--output' is missing."""
    if facts.output:
        if facts.output not in candidates:
            raise SourceError(f"{where}: no output named {facts.output!r}; outputs are {', '.join(candidates)}")
        return facts.output, []
    if len(candidates) == 1:
        return next(iter(candidates)), []
    if not candidates:
        raise SourceError(f"{where}: the graph has no plausible heatmap output; name it with --output NAME")
    return next(iter(candidates)), ["output"]


def output_spec(where: str, name: str, shape: Sequence[int], keypoints: KeypointSpec | None,
                input_layout: str) -> OutputSpec:
    """OutputSpec from a known 4-D output shape; layout from where the keypoint count sits, else the input's."""
    if len(shape) != 4 or any(not d for d in shape):
        raise SourceError(f"{where}: output {name!r} has shape {list(shape)}, not a 4-D heatmap batch")
    k = len(keypoints.names) if keypoints else None
    layout = "NCHW" if shape[1] == k and shape[3] != k else "NHWC" if shape[3] == k and shape[1] != k else input_layout
    channels = shape[1] if layout == "NCHW" else shape[3]
    if k is not None and channels != k:
        raise SourceError(f"{where}: output {name!r} shape {list(shape)} has {channels} heatmaps but the "
                          f"keypoint set names {k}")
    hh, hw = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    return OutputSpec(name=name, heatmap_height=int(hh), heatmap_width=int(hw), layout=layout, dtype="float32")

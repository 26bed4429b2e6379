"""The types and ranges of every manifest value, checked once at load before anything is built from them.

A manifest is data from disk: a wrong type or nesting, a huge number or a NaN must be one line naming the key,
never a TypeError deep in a backend. Unknown keys are allowed at the top level (newer writers may add
provenance-like sections) but not inside the specs the runtime acts on.
"""
from __future__ import annotations

import math
from typing import Any

MAX_SIDE = 8192  # pixels: no pose or detector input is larger
MAX_KEYPOINTS = 1024
MAX_DEPTH = 32


def _num(lo: float, hi: float, integer: bool = False):
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            return f"expected {'an integer' if integer else 'a number'}, got {type(v).__name__}"
        if not math.isfinite(v) or not lo <= v <= hi:
            return f"{v!r} is outside {lo:g}..{hi:g}"
        return None
    return check


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) and len(v) <= 4096 else "expected a string (at most 4096 characters)"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected true or false, got {type(v).__name__}"


def _list(item, lo: int = 0, hi: int = 100_000):
    def check(v: Any) -> str | None:
        if not isinstance(v, list) or not lo <= len(v) <= hi:
            return f"expected a list of {lo}..{hi} items"
        for i, x in enumerate(v):
            why = item(x)
            if why:
                return f"[{i}]: {why}"
        return None
    return check


def _dict(value, keys=None):
    def check(v: Any) -> str | None:
        if not isinstance(v, dict):
            return f"expected an object, got {type(v).__name__}"
        for k, x in v.items():
            why = _str(k) or (keys(k) if keys else None) or value(x)
            if why:
                return f"{k}: {why}"
        return None
    return check


def _any(v: Any) -> str | None:
    return None


def _optional(check):
    return lambda v: None if v is None else check(v)


_QUANT = {"scale": _num(1e-30, 1e30), "zero_point": _num(-65536, 65535, integer=True)}
_SIDE = _num(1, MAX_SIDE, integer=True)
_PAIR = _list(_num(0, MAX_KEYPOINTS, integer=True), 2, 2)


def _spec(fields: dict, required: tuple[str, ...]):
    def check(v: Any) -> str | None:
        if not isinstance(v, dict):
            return f"expected an object, got {type(v).__name__}"
        unknown = sorted(set(v) - set(fields))
        if unknown:
            return f"{unknown[0]}: unknown key"
        for k in required:
            if k not in v:
                return f"{k}: missing"
        for k, x in v.items():
            why = fields[k](x)
            if why:
                return f"{k}: {why}"
        return None
    return check


_QUANT_SPEC = _optional(_spec(_QUANT, ("scale", "zero_point")))
_TRIPLE = _list(_num(-1e6, 1e6), 3, 3)

FIELDS = {
    "schema": _str,
    "model": _dict(_any),
    "format": _str,
    "model_file": _str,
    "precision": _str,
    "execution_precision": _str,
    "task": _str,
    "input": _spec({"name": _str, "height": _SIDE, "width": _SIDE, "layout": _str, "dtype": _str, "color": _str,
                    "mean": _TRIPLE, "std": _list(_num(1e-6, 1e6), 3, 3), "quantization": _QUANT_SPEC,
                    "padding": _num(0.1, 10)}, ("name", "height", "width")),
    "output": _spec({"name": _str, "heatmap_height": _SIDE, "heatmap_width": _SIDE, "layout": _str, "dtype": _str,
                     "quantization": _QUANT_SPEC}, ("name", "heatmap_height", "heatmap_width")),
    "keypoints": _spec({"names": _list(_str, 1, MAX_KEYPOINTS), "skeleton": _list(_PAIR, 0, 4096),
                        "flip_pairs": _list(_PAIR, 0, MAX_KEYPOINTS), "sigmas": _list(_num(0, 100), 0, MAX_KEYPOINTS)},
                       ("names",)),
    "decode": _spec({"method": _str, "blur_kernel": _num(1, 99, integer=True), "flip_test": _bool}, ()),
    "devices": _list(_str, 0, 256),
    "files": _dict(_str),
    "blobs": _dict(_str),
    "provenance": _dict(_any),
    "fidelity": _dict(_any),
    "detect": _dict(_any),  # its values are checked by edge_pose.detect.spec, which knows them
}
REQUIRED = {"pose": ("model", "format", "model_file", "precision", "input", "output", "keypoints"),
            "detect": ("model", "format", "model_file", "precision", "input", "detect")}


def _depth(v: Any, limit: int) -> bool:
    """True when `v` nests deeper than `limit` (checked without recursion)."""
    stack = [(v, 0)]
    while stack:
        x, d = stack.pop()
        if d > limit:
            return True
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
    return False


def check_types(data: dict[str, Any]) -> str | None:
    """The first problem with the manifest's types or ranges, as "key: what is wrong", or None."""
    if _depth(data, MAX_DEPTH):
        return f"nested deeper than {MAX_DEPTH} levels"
    for k in REQUIRED.get(data.get("task", "pose"), REQUIRED["pose"]):
        if k not in data:
            return f"{k}: missing"
    for k, check in FIELDS.items():
        if k in data and not (k in ("output", "keypoints") and data[k] is None and data.get("task") == "detect"):
            why = check(data[k])
            if why:
                return f"{k}: {why}"
    return None

"""Strict JSON out: NaN and Infinity are not JSON, and a results file holding them looks valid to some readers
(Python's json) and breaks others (browsers, jq, pycocotools' strict loaders). Everything we write goes through here.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def finite(x, default=None):
    """float(x) when it is a finite number, else `default` (None becomes JSON null): for values that may be NaN."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _first_non_finite(obj, where: str = "$", depth: int = 0) -> str | None:
    """JSON path of the first NaN/Infinity in obj (for the error line), or None."""
    if depth > 200:
        return None
    if isinstance(obj, float):
        return None if math.isfinite(obj) else where
    if isinstance(obj, dict):
        items = ((f"{where}.{k}", v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for path, value in items:
        found = _first_non_finite(value, path, depth + 1)
        if found:
            return found
    return None


def dumps(obj, **kw) -> str:
    """json.dumps with allow_nan=False always; ValueError names where the first non-finite number is."""
    kw["allow_nan"] = False
    try:
        return json.dumps(obj, **kw)
    except ValueError as exc:
        where = _first_non_finite(obj)
        if where is None:
            raise
        raise ValueError(f"refusing to write a non-finite number (NaN or Infinity) at {where}") from exc


def write(path, obj, **kw) -> None:
    """dumps(obj) to path atomically (temporary file then rename): a failure never leaves a half-written file."""
    path = Path(path)
    text = dumps(obj, **kw) + "\n"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_STRINGS = None


def nesting_depth(text: str) -> int:
    """How deep the brackets of a JSON text nest, measured before parsing (vectorised, no recursion).

    Parsing refuses deep nesting with a RecursionError only while Python's recursion limit is sane; a library that
    raises it (onnx2tf sets it to 2**31 - 1 at import) turns a deeply nested file into a C stack overflow. So every
    file from outside is measured here first.
    """
    import re

    import numpy as np

    global _STRINGS
    if _STRINGS is None:
        _STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
    if "[" not in text and "{" not in text:
        return 0
    stripped = _STRINGS.sub('""', text).encode("utf-8", "surrogatepass")
    b = np.frombuffer(stripped, np.uint8)
    step = (np.isin(b, (91, 123)).astype(np.int32) - np.isin(b, (93, 125)).astype(np.int32))
    return int(np.cumsum(step).max(initial=0))


def check_depth(text: str, limit: int, where: str) -> None:
    """ValueError naming `where` when the text nests deeper than `limit`."""
    depth = nesting_depth(text)
    if depth > limit:
        raise ValueError(f"{where}: JSON nested {depth} levels deep (at most {limit})")


# Reading: JSON from outside (files a user points us at) is parsed with limits, so that a hostile file cannot crash
# the reader (json recurses once per nesting level) or smuggle in numbers JSON does not have.

MAX_DEPTH = 64


class JsonLimitError(ValueError):
    """JSON that parses but is beyond what a reader of ours accepts (too deep, NaN, a huge number); one line."""


def _refuse_constant(name: str):
    raise JsonLimitError(f"{name} is not a JSON number")


def check_limits(obj: Any, max_depth: int = MAX_DEPTH) -> None:
    """Walk a parsed document without recursion: JsonLimitError past max_depth levels or at a non-finite number."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            if isinstance(node, float) and not math.isfinite(node):
                raise JsonLimitError(f"number out of range ({node})")
            continue
        if depth > max_depth:
            raise JsonLimitError(f"nested more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in node if isinstance(child, (list, dict, float)))


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads for input from outside: at most `max_depth` levels, no NaN/Infinity, no number that overflows
    (1e999), no integer past Python's digit limit. json.JSONDecodeError for bad syntax, JsonLimitError past a limit."""
    depth = nesting_depth(text)  # first: the parser's RecursionError guard is gone once a library lifts the limit
    if depth > max_depth:
        raise JsonLimitError(f"nested {depth} levels deep (at most {max_depth})")
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # the C parser recurses once per level and gives up near the interpreter's limit
        raise JsonLimitError(f"nested more than {max_depth} levels deep") from None
    except ValueError as exc:
        if isinstance(exc, (json.JSONDecodeError, JsonLimitError)):
            raise
        raise JsonLimitError(" ".join(str(exc).split())[:120]) from None  # e.g. an integer of 5000 digits
    check_limits(obj, max_depth)
    return obj

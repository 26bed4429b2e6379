"""Strict JSON out: NaN and Infinity are not JSON, and a reader (browser, jq, a JSON-lines consumer) rejects the
whole document for one such number. `dumps` refuses them (ValueError) instead of writing invalid output.
"""
from __future__ import annotations

import json
import math
from typing import Any


def dumps(obj: Any, **kw: Any) -> str:
    """json.dumps with allow_nan=False: a non-finite float raises ValueError rather than produce invalid JSON."""
    kw["allow_nan"] = False
    return json.dumps(obj, **kw)


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

"""Strict JSON out: NaN and Infinity are not JSON, and a reader (browser, jq, a JSON-lines consumer) rejects the
whole document for one such number. `dumps` refuses them (ValueError) instead of writing invalid output.
"""
from __future__ import annotations

import json
from typing import Any


def dumps(obj: Any, **kw: Any) -> str:
    """json.dumps with allow_nan=False: a non-finite float raises ValueError rather than produce invalid JSON."""
    kw["allow_nan"] = False
    return json.dumps(obj, **kw)

"""Entries name their implementation as "package.module:attribute"; this resolves one when it is needed."""
from __future__ import annotations

import importlib
from typing import Any


def load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj

"""Small helpers both adapters need: is a runtime installed (without importing it), and an error as one line."""
from __future__ import annotations

import importlib.util

_NOISE = ("Exception from ", "Traceback", "File \"", "Check '")


def installed(module: str) -> bool:
    """Whether the top-level package can be found, without importing it (a broken finder counts as absent)."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def one_line(exc: BaseException, last: bool = False) -> str:
    """The informative line of a runtime's error: the first (LiteRT), or the last after C++ frames (OpenVINO)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith(_NOISE)]
    if not lines:
        return type(exc).__name__
    return lines[-1] if last else lines[0]

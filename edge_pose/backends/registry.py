"""The backend adapters by name, made from the registry's entries (adapter modules import no runtime)."""
from __future__ import annotations

from registry import BACKENDS as ENTRIES
from registry import load

BACKENDS = {name: load(entry.adapter)() for name, entry in ENTRIES.items()}


def get_backend(name: str):
    from edge_pose.backends.base import BackendUnavailable

    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]

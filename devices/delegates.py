"""Finding LiteRT delegate libraries on disk, without loading them.

Shared by detection (what this machine has) and the LiteRT adapter (what to load), so both agree on where a
GPU delegate is looked for. `root` lets tests point the search at a fake file tree.
"""
from __future__ import annotations

import ctypes.util
import functools
import os
from pathlib import Path

ENV_PATH = "EDGE_POSE_DELEGATE_PATH"  # extra directories to search, os.pathsep-separated

# library file names per delegate kind, most specific first
LIBRARIES = {
    "gpu": ("libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so", "libLiteRtGpuAccelerator.so"),
}
KNOWN_DIRS = (
    "/usr/local/lib", "/usr/lib", "/usr/lib/aarch64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/arm-linux-gnueabihf", "/usr/local/lib/aarch64-linux-gnu", "/opt/edge-pose/lib",
)


def search_dirs(root: str | os.PathLike = "/") -> list[Path]:
    root = Path(root)
    extra = [p for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    ld = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    dirs = [Path(p) for p in extra + ld] + [root / d.lstrip("/") for d in KNOWN_DIRS]
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_delegate(kind_or_name: str, root: str | os.PathLike = "/") -> Path | None:
    """Path of a delegate library: a kind ("gpu"), a file name, or a path; None when not found."""
    if os.sep in kind_or_name:
        p = Path(kind_or_name)
        return p if p.is_file() else None
    names = LIBRARIES.get(kind_or_name, (kind_or_name,))
    for d in search_dirs(root):
        for name in names:
            if (d / name).is_file():
                return d / name
    if str(root) == "/":
        for name in names:
            found = _ldconfig(name[3:].split(".so")[0] if name.startswith("lib") else name)
            if found:
                return Path(found)
    return None


@functools.lru_cache(maxsize=None)
def _ldconfig(short: str) -> str | None:
    """ctypes' search of the linker cache (it runs ldconfig: slow enough to do once per name)."""
    return ctypes.util.find_library(short)


def find_delegates(root: str | os.PathLike = "/") -> dict[str, Path]:
    """Every known delegate kind found here."""
    return {kind: p for kind in LIBRARIES if (p := find_delegate(kind, root)) is not None}

"""sha256 of files, for bundles: each file read once per process unless it changed since.

`edge-pose serve` resolves its bundles for the config check, the selector and the detector (and again on every
SIGHUP); the selector, inspect and bench resolve them too. Each resolve verifies every file against its manifest:
only the first reads the file.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Files hashed in this process: resolved path -> (signature when hashed, sha256); one entry per path.
_DIGESTS: dict[str, tuple[tuple, str]] = {}
# Timestamps can be as coarse as a clock tick (2 s on FAT): a file changed this shortly before it was hashed could
# change again, same size, without its signature changing, so it is not remembered.
SETTLED_NS = 2_000_000_000


def file_digest(path: Path) -> str:
    """sha256_file(path), read again only if the file changed since this process last hashed it."""
    key, st = str(path.resolve()), path.stat()
    # ctime too: it cannot be set back (mtime can: cp -p, touch -d), so a replaced file never looks unchanged
    signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    known = _DIGESTS.get(key)
    if known is not None and known[0] == signature:
        return known[1]
    started = time.time_ns()
    digest = sha256_file(path)
    if max(st.st_mtime_ns, st.st_ctime_ns) < started - SETTLED_NS:
        _DIGESTS[key] = (signature, digest)
    else:
        _DIGESTS.pop(key, None)
    return digest

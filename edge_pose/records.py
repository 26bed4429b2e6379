"""Bench records: what `edge-pose bench --record` measured on this device, where later runs find it.

A record file (`edge_pose.records.json`) lives beside the bundles it measured (in the directory of bundles) or in a
directory the user names with $EDGE_POSE_RECORDS. It holds, per device id, one entry per bundle x backend x
accelerator x threads: the bundle's model sha256, the runtime and its version, and the p50. The selector ranks
candidates that passed their guard by these figures when an entry matches this device, this runtime version and
this bundle's hash; an entry made with another runtime version or for another bundle hash is stale: ignored, with a
note saying why.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_pose.bundle import Bundle

SCHEMA = "edge-pose/records@1"
FILENAME = "edge_pose.records.json"
ENV = "EDGE_POSE_RECORDS"
MAX_BYTES = 8 << 20


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_id(profile: str) -> str:
    """This machine as records know it: profile, CPU model, architecture, logical cores."""
    return f"{profile} | {cpu_model()} | {platform.machine()} | {os.cpu_count()} cores"


def runtime_version(backend: str) -> str:
    """The installed version of the backend's runtime, from package metadata (nothing imported)."""
    from registry import BACKENDS

    for name in BACKENDS[backend].dists if backend in BACKENDS else (backend,):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def model_hash(bundle: Bundle) -> str:
    return bundle.manifest.files.get(bundle.manifest.model_file, "")


@dataclass
class Entry:
    bundle: str  # bundle directory name
    model_sha256: str
    backend: str
    accelerator: str
    threads: int | None  # as the chosen candidate asked (the request, else the profile's; None: all cores)
    runtime: str  # e.g. "openvino 2026.4.1"
    p50_ms: float
    measured_at: str

    def key(self) -> tuple:
        return (self.bundle, self.backend, self.accelerator, self.threads)


def locations(bundle_dirs: list[Path]) -> list[Path]:
    """Record files to read for these bundles: beside them, then $EDGE_POSE_RECORDS (a file or a directory)."""
    found = []
    for d in bundle_dirs:
        found.append(d / FILENAME)
    env = os.environ.get(ENV)
    if env:
        p = Path(env)
        found.append(p / FILENAME if p.is_dir() or not p.suffix else p)
    seen, out = set(), []
    for p in found:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file() or path.stat().st_size > MAX_BYTES:
        return {}
    try:
        from edge_pose.jsonio import check_depth

        text = path.read_text(encoding="utf-8")
        check_depth(text, 16, str(path))
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else {}


def read_entries(path: Path, device: str) -> list[Entry]:
    rows = _read(path).get("devices", {}).get(device, {}).get("entries", [])
    out = []
    for r in rows if isinstance(rows, list) else []:
        try:
            out.append(Entry(str(r["bundle"]), str(r["model_sha256"]), str(r["backend"]), str(r["accelerator"]),
                             int(r["threads"]) if r.get("threads") else None, str(r["runtime"]),
                             float(r["p50_ms"]), str(r.get("measured_at", ""))))
        except (KeyError, TypeError, ValueError):
            continue  # one malformed row does not hide the rest
    return out


def write_entries(path: Path, device: str, entries: list[Entry]) -> Path:
    """Merge `entries` into the record file at `path` (newer replaces same key), written atomically."""
    data = _read(path) or {"schema": SCHEMA, "devices": {}}
    dev = data.setdefault("devices", {}).setdefault(device, {"entries": []})
    by_key = {Entry(**e).key(): e for e in dev.get("entries", []) if isinstance(e, dict) and _entry_ok(e)}
    for e in entries:
        by_key[e.key()] = e.__dict__
    dev["entries"] = list(by_key.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _entry_ok(e: dict) -> bool:
    try:
        Entry(**e)
        return True
    except TypeError:
        return False


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Lookup:
    """What the records say about the candidates: p50 by candidate key, and notes (stale entries, sources)."""

    p50: dict[tuple, tuple[float, str]]  # key -> (p50 ms, record file)
    notes: list[str]


def lookup(bundles: list[Bundle], device: str) -> Lookup:
    """Valid entries for these bundles on this device; stale ones become notes."""
    dirs = sorted({b.path.parent for b in bundles}, key=str)
    by_name = {b.path.name: b for b in bundles}
    p50: dict[tuple, tuple[float, str]] = {}
    notes: list[str] = []
    versions: dict[str, str] = {}
    for path in locations(dirs):
        for e in read_entries(path, device):
            b = by_name.get(e.bundle)
            if b is None:
                continue
            if e.model_sha256 != model_hash(b):
                notes.append(f"record for {e.bundle} ({path}) ignored: the bundle changed since it was measured")
                continue
            have = versions.setdefault(e.backend, runtime_version(e.backend))
            if e.runtime != have:
                notes.append(f"record for {e.bundle} on {e.backend} ignored: measured with {e.runtime}, "
                             f"this is {have}")
                continue
            p50[e.key()] = (e.p50_ms, str(path))
    return Lookup(p50, notes)

"""Device profiles: TOML data saying how to recognise a device and what to run on it, in what order.

Profiles are data so that a user can add a board without touching code: a TOML file in $EDGE_POSE_DEVICES_DIR or
~/.config/edge-pose/devices/ adds a profile, or replaces a built-in one of the same name. Both sides read them:
the converters (what to build for a device: `convert.targets`) and the runtime (what to try first: `prefer`).
What a format, precision, backend or accelerator spelling is comes from the registry (the one package below this
one); errors here are plain ProfileError (a ValueError) with one line.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 devices only
    import tomli as tomllib

from registry import BACKENDS as _BACKENDS
from registry import FORMATS as _FORMATS
from registry import PRECISIONS as _PRECISIONS

BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"
ENV_DIR = "EDGE_POSE_DEVICES_DIR"

FORMATS = tuple(_FORMATS)
PRECISIONS = tuple(_PRECISIONS)
BACKENDS = {name: entry.formats for name, entry in _BACKENDS.items()}


class ProfileError(ValueError):
    """A profile file that cannot be used; str(exc) is one line naming the file and the key."""


@dataclass(frozen=True)
class Preference:
    """One way to run a model on a device, tried in the profile's order."""

    format: str
    precision: str
    backend: str
    accelerator: str  # litert: cpu | gpu | delegate; openvino: CPU | GPU | NPU | AUTO:...
    threads: int | None = None  # None: all cores
    delegate: str | None = None  # litert: library path (or name) of an external delegate
    delegate_options: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # openvino: extra compile properties

    def label(self) -> str:
        t = f" x{self.threads}" if self.threads else ""
        return f"{self.format}/{self.precision} on {self.backend}:{self.accelerator}{t}"


@dataclass(frozen=True)
class Recognise:
    """Evidence that names this device; `generic` profiles match on the architecture alone."""

    arch: tuple[str, ...] = ()
    device_tree_model: tuple[str, ...] = ()  # case-insensitive substrings of /proc/device-tree/model
    device_tree_compatible: tuple[str, ...] = ()  # prefixes of /proc/device-tree/compatible entries
    tegra_release: tuple[str, ...] = ()  # substrings of /etc/nv_tegra_release (e.g. "R36")
    cpu_model: tuple[str, ...] = ()  # regular expressions searched in /proc/cpuinfo's model name
    openvino_devices: tuple[str, ...] = ()  # OpenVINO devices this device shows (supporting evidence)
    generic: bool = False


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    runtimes: tuple[str, ...]
    accelerators: tuple[str, ...]
    detect: Recognise
    prefer: tuple[Preference, ...]
    convert_targets: tuple[tuple[str, str], ...]  # what the converters build for this device by default
    convert_blobs: tuple[str, ...] = ()  # OpenVINO devices to precompile blobs for
    source: Path | None = None


def _err(where: Path, key: str, what: str) -> ProfileError:
    return ProfileError(f"{where}: {key}: {what}")


def _str_list(where, data, key, required=False) -> tuple[str, ...]:
    if key not in data:
        if required:
            raise _err(where, key, "missing")
        return ()
    value = data[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(where, key, f"expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _only(where: Path, data: dict, allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _err(where, prefix + unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _preference(where: Path, i: int, d: Any) -> Preference:
    key = f"prefer[{i}]"
    if not isinstance(d, dict):
        raise _err(where, key, "expected a table")
    _only(where, d, {"format", "precision", "backend", "accelerator", "threads", "delegate", "delegate_options",
                     "config"}, key + ".")
    for k in ("format", "precision", "backend", "accelerator"):
        if not isinstance(d.get(k), str):
            raise _err(where, f"{key}.{k}", "missing or not a string")
    if d["format"] not in FORMATS:
        raise _err(where, f"{key}.format", f"{d['format']!r} not in {FORMATS}")
    if d["precision"] not in PRECISIONS:
        raise _err(where, f"{key}.precision", f"{d['precision']!r} not in {PRECISIONS}")
    if d["backend"] not in BACKENDS:
        raise _err(where, f"{key}.backend", f"{d['backend']!r} not in {tuple(BACKENDS)}")
    if d["format"] not in BACKENDS[d["backend"]]:
        raise _err(where, f"{key}.format", f"{d['backend']} does not load {d['format']!r} models")
    acc = d["accelerator"]
    entry = _BACKENDS[d["backend"]]
    if not re.fullmatch(entry.accelerator_pattern, acc):
        raise _err(where, f"{key}.accelerator", f"{acc!r} is not a {d['backend']} accelerator "
                                                f"({', '.join(entry.accelerators)})")
    if acc == "delegate" and not isinstance(d.get("delegate"), str):
        raise _err(where, f"{key}.delegate", "accelerator 'delegate' needs the delegate library path")
    threads = d.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 0):
        raise _err(where, f"{key}.threads", f"expected a non-negative integer, got {threads!r}")
    for k in ("delegate_options", "config"):
        if not isinstance(d.get(k, {}), dict):
            raise _err(where, f"{key}.{k}", "expected a table")
    return Preference(d["format"], d["precision"], d["backend"], acc, threads or None, d.get("delegate"),
                      dict(d.get("delegate_options", {})), dict(d.get("config", {})))


def parse_profile(data: dict[str, Any], where: Path) -> Profile:
    """Validate one profile's data; every problem is one line naming the file and the key."""
    _only(where, data, {"name", "description", "runtimes", "accelerators", "detect", "convert", "prefer"}, "")
    for k in ("name", "description"):
        if not isinstance(data.get(k), str) or not data[k]:
            raise _err(where, k, "missing or not a non-empty string")
    det = data.get("detect", {})
    if not isinstance(det, dict):
        raise _err(where, "detect", "expected a table")
    _only(where, det, set(Recognise.__dataclass_fields__), "detect.")
    patterns = _str_list(where, det, "cpu_model")
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise _err(where, "detect.cpu_model", f"bad regular expression {p!r} ({exc})") from None
    if not isinstance(det.get("generic", False), bool):
        raise _err(where, "detect.generic", "expected true or false")
    recognise = Recognise(
        arch=_str_list(where, det, "arch"), device_tree_model=_str_list(where, det, "device_tree_model"),
        device_tree_compatible=_str_list(where, det, "device_tree_compatible"),
        tegra_release=_str_list(where, det, "tegra_release"), cpu_model=patterns,
        openvino_devices=_str_list(where, det, "openvino_devices"), generic=det.get("generic", False))
    prefer = data.get("prefer")
    if not isinstance(prefer, list) or not prefer:
        raise _err(where, "prefer", "missing: a profile needs at least one [[prefer]] entry")
    conv = data.get("convert", {})
    if not isinstance(conv, dict):
        raise _err(where, "convert", "expected a table")
    _only(where, conv, {"targets", "blobs"}, "convert.")
    targets = []
    for i, t in enumerate(conv.get("targets", [])):
        if (not isinstance(t, list) or len(t) != 2 or t[0] not in FORMATS or t[1] not in PRECISIONS):
            raise _err(where, f"convert.targets[{i}]", f"expected [format, precision], got {t!r}")
        targets.append((t[0], t[1]))
    return Profile(
        name=data["name"], description=data["description"], runtimes=_str_list(where, data, "runtimes"),
        accelerators=_str_list(where, data, "accelerators"), detect=recognise,
        prefer=tuple(_preference(where, i, p) for i, p in enumerate(prefer)),
        convert_targets=tuple(targets), convert_blobs=_str_list(where, conv, "blobs"), source=where)


def load_profile(path: str | os.PathLike) -> Profile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: unreadable ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML ({exc})") from None
    return parse_profile(data, path)


def profile_dirs() -> list[Path]:
    """Where profiles come from, later overriding earlier: built-in, the user's config dir, $EDGE_POSE_DEVICES_DIR."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    dirs = [BUILTIN_DIR, config / "edge-pose" / "devices"]
    dirs += [Path(p) for p in os.environ.get(ENV_DIR, "").split(os.pathsep) if p]
    return dirs


def load_profiles(dirs: list[Path] | None = None) -> dict[str, Profile]:
    """Every profile by name; a user file with a built-in's name replaces it."""
    profiles: dict[str, Profile] = {}
    for d in profile_dirs() if dirs is None else dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.toml")):
            p = load_profile(path)
            profiles[p.name] = p
    return profiles


def get_profile(name: str, profiles: dict[str, Profile] | None = None) -> Profile:
    profiles = load_profiles() if profiles is None else profiles
    if name not in profiles:
        raise ProfileError(f"device profile {name!r} not found (known: {', '.join(sorted(profiles))})")
    return profiles[name]

"""What device is this? Read the machine's own descriptions and pick the profile they name, with reasons.

Sources: /proc/device-tree/model and /compatible (Raspberry Pi, Jetson), /etc/nv_tegra_release (Jetson L4T),
/proc/cpuinfo (CPU model name), platform.machine(), OpenVINO's device list (only if openvino is installed; imported
here lazily) and delegate libraries on disk. All file reads go through `root`, so tests can build a fake tree.
"""
from __future__ import annotations

import importlib.util
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from devices.delegates import find_delegates
from devices.profiles import Profile, ProfileError, load_profiles

RUNTIME_MODULES = {"ai_edge_litert": "litert", "tflite_runtime": "litert", "tensorflow": "litert",
                   "openvino": "openvino"}

# evidence weights: a device-tree model names a board outright; a CPU model names a chip family
WEIGHTS = {"device_tree_model": 100, "device_tree_compatible": 80, "cpu_model": 50, "openvino_devices": 20,
           "tegra_release": 10, "generic": 1}


@dataclass
class Facts:
    machine: str = ""
    device_tree_model: str = ""
    device_tree_compatible: list[str] = field(default_factory=list)
    tegra_release: str = ""
    cpu_model: str = ""
    cpu_count: int = 0
    openvino_devices: list[str] | None = None  # None: openvino not installed or not asked
    delegates: dict[str, str] = field(default_factory=dict)
    runtimes: list[str] = field(default_factory=list)  # installed runtime modules


@dataclass
class Detection:
    profile: Profile
    reasons: list[str]
    facts: Facts
    scores: dict[str, int]  # every profile that matched at all


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\x00", b"\n").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def installed_runtimes() -> list[str]:
    """Runtime modules importable here (find_spec only: nothing is imported)."""
    found = []
    for mod in RUNTIME_MODULES:
        try:
            if importlib.util.find_spec(mod) is not None:
                found.append(mod)
        except (ImportError, ValueError):
            pass
    return found


def openvino_devices() -> list[str] | None:
    """OpenVINO's available devices, or None when openvino is not installed or cannot start."""
    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        import openvino as ov

        return list(ov.Core().available_devices)
    except Exception:  # noqa: BLE001 - a broken install means "no OpenVINO devices", with no traceback
        return None


def gather(root: str | Path = "/", machine: str | None = None, ov_devices: list[str] | None | str = "query"
           ) -> Facts:
    """Collect the facts detection uses. `ov_devices="query"` asks OpenVINO (only for the real root)."""
    root = Path(root)
    cpuinfo = _read(root / "proc/cpuinfo")
    cpu_model, board = "", ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "cpu model") and not cpu_model:
            cpu_model = value
        elif key == "model" and not value.isdigit():
            board = value  # Raspberry Pi OS writes the board model here
    dt_model = _read(root / "proc/device-tree/model") or _read(root / "sys/firmware/devicetree/base/model") or board
    compat = _read(root / "proc/device-tree/compatible") or _read(root / "sys/firmware/devicetree/base/compatible")
    if ov_devices == "query":
        ov_devices = openvino_devices() if str(root) == "/" else None
    return Facts(
        machine=machine if machine is not None else platform.machine(),
        device_tree_model=dt_model, device_tree_compatible=[c for c in compat.splitlines() if c],
        tegra_release=(_read(root / "etc/nv_tegra_release").splitlines() or [""])[0],
        cpu_model=cpu_model, cpu_count=sum(1 for ln in cpuinfo.splitlines() if ln.lower().startswith("processor")),
        openvino_devices=ov_devices, delegates={k: str(v) for k, v in find_delegates(root).items()},
        runtimes=installed_runtimes())


def score(profile: Profile, facts: Facts) -> tuple[int, list[str]]:
    """How strongly the facts name this profile (0: not at all), and why."""
    r = profile.detect
    if r.arch and facts.machine not in r.arch:
        return 0, [f"architecture {facts.machine!r} is not one of {list(r.arch)}"]
    points, why = 0, []
    model = facts.device_tree_model.lower()
    hit = next((s for s in r.device_tree_model if s.lower() in model), None) if model else None
    if hit:
        points += WEIGHTS["device_tree_model"]
        why.append(f"device-tree model {facts.device_tree_model!r} contains {hit!r}")
    hit = next((s for s in r.device_tree_compatible for c in facts.device_tree_compatible if c.startswith(s)), None)
    if hit:
        points += WEIGHTS["device_tree_compatible"]
        why.append(f"device-tree compatible lists {hit!r}")
    hit = next((p for p in r.cpu_model if facts.cpu_model and re.search(p, facts.cpu_model)), None)
    if hit:
        points += WEIGHTS["cpu_model"]
        why.append(f"CPU model {facts.cpu_model!r} matches {hit!r}")
    hit = next((s for s in r.tegra_release if s in facts.tegra_release), None) if facts.tegra_release else None
    if hit:
        points += WEIGHTS["tegra_release"]
        why.append(f"/etc/nv_tegra_release says {facts.tegra_release.split(',')[0]!r} ({hit})")
    if points and r.openvino_devices and facts.openvino_devices is not None:
        missing = [d for d in r.openvino_devices if not any(x.split(".")[0] == d for x in facts.openvino_devices)]
        if missing:
            why.append(f"but OpenVINO does not show {', '.join(missing)} (devices: {facts.openvino_devices})")
        else:
            points += WEIGHTS["openvino_devices"]
            why.append(f"OpenVINO shows {', '.join(r.openvino_devices)}")
    if not points and r.generic:
        points = WEIGHTS["generic"]
        why.append(f"architecture {facts.machine!r} (no more specific profile matched)")
    return points, why


def detect(root: str | Path = "/", profiles: dict[str, Profile] | None = None, facts: Facts | None = None,
           machine: str | None = None, ov_devices: list[str] | None | str = "query") -> Detection:
    """The best-matching profile for this machine (or the fake tree at `root`), with the reasons."""
    profiles = load_profiles() if profiles is None else profiles
    facts = facts or gather(root, machine=machine, ov_devices=ov_devices)
    scored = {name: score(p, facts) for name, p in sorted(profiles.items())}
    matched = {name: s for name, s in scored.items() if s[0] > 0}
    if not matched:
        raise ProfileError(f"no device profile matches this machine (architecture {facts.machine!r}); "
                           f"name one with --device or add a profile file")
    best = min(matched, key=lambda n: (-matched[n][0], n))
    reasons = list(matched[best][1])
    ties = [n for n in matched if n != best and matched[n][0] == matched[best][0]]
    if ties:
        reasons.append(f"equally likely: {', '.join(ties)} (picked the first by name; name one with --device)")
    return Detection(profiles[best], reasons, facts, {n: s[0] for n, s in matched.items()})

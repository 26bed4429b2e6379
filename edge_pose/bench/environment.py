"""What the numbers were measured on: CPU, clocks, temperature, throttling, runtime versions.

Everything is read from files the OS exposes (so it works on a Pi, a Jetson and a PC alike) and is simply absent
where the OS does not expose it; nothing here needs root.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

RUNTIME_PACKAGES = ("edge-pose", "ai-edge-litert", "tflite-runtime", "openvino", "numpy", "opencv-contrib-python-headless")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip("\x00\n ")
    except OSError:
        return None


def cpu_model(root: Path = Path("/")) -> str:
    text = _read(root / "proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_frequency(root: Path = Path("/")) -> dict:
    """Governor and current/max frequency (MHz) of each CPU cpufreq exposes."""
    out = {}
    for cpu in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*")):
        freq = cpu / "cpufreq"
        gov = _read(freq / "scaling_governor")
        cur = _read(freq / "scaling_cur_freq")
        mx = _read(freq / "scaling_max_freq")
        if gov or cur:
            out[cpu.name] = {"governor": gov, "cur_mhz": int(cur) / 1e3 if cur else None,
                             "max_mhz": int(mx) / 1e3 if mx else None}
    return out


def temperatures(root: Path = Path("/")) -> dict[str, float]:
    """Thermal zones in degrees C (Raspberry Pi cpu-thermal, Jetson CPU-therm/GPU-therm, PC x86_pkg_temp)."""
    temps = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        t, kind = _read(zone / "temp"), _read(zone / "type") or zone.name
        if t and t.lstrip("-").isdigit():
            temps[kind] = int(t) / 1e3
    return temps


def throttling(root: Path = Path("/")) -> dict:
    """Raspberry Pi firmware throttle flags (vcgencmd) and Jetson power mode, where present."""
    info = {}
    if shutil.which("vcgencmd"):
        try:
            out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2).stdout
            flags = int(out.strip().split("=")[1], 16)
            info["rpi_throttled_flags"] = hex(flags)
            info["rpi_throttled_now"] = bool(flags & 0x4)
            info["rpi_under_voltage_now"] = bool(flags & 0x1)
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
    nv = _read(root / "etc/nv_tegra_release")
    if nv:
        info["jetson_release"] = nv.splitlines()[0]
    gpu_freq = _read(root / "sys/devices/gpu.0/devfreq/17000000.ga10b/cur_freq")
    if gpu_freq:
        info["jetson_gpu_cur_hz"] = int(gpu_freq)
    return info


def runtime_versions() -> dict[str, str]:
    versions = {}
    for name in RUNTIME_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def collect(root: Path = Path("/")) -> dict:
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = list(range(os.cpu_count() or 1))
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(root),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpufreq": cpu_frequency(root),
        "temperatures_c": temperatures(root),
        "throttling": throttling(root),
        "runtimes": runtime_versions(),
    }

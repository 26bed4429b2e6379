"""List device profiles, or say what this machine is and why (`edge-pose devices detect --explain`)."""
from __future__ import annotations

import json
from dataclasses import asdict

HELP = "list device profiles; `devices detect [--explain]` says what this machine is and why"


def add_arguments(parser) -> None:
    parser.add_argument("action", nargs="?", choices=("list", "detect"), default="list",
                        help="list profiles (default) or detect this machine")
    parser.add_argument("--explain", action="store_true", help="with detect: the facts read and every match")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _profiles():
    from devices.profiles import ProfileError, load_profiles
    from edge_pose.select import DeviceError

    try:
        return load_profiles()
    except ProfileError as exc:
        raise DeviceError(str(exc)) from None


def _list(args) -> int:
    from devices.profiles import BUILTIN_DIR
    from edge_pose.cli.table import format_table

    profiles = _profiles()
    if args.json:
        print(json.dumps({n: {"description": p.description, "source": str(p.source),
                              "prefer": [asdict(x) for x in p.prefer], "convert": p.convert_targets}
                          for n, p in profiles.items()}, indent=1))
        return 0
    rows = [[n, "/".join(p.detect.arch) or "any", ", ".join(p.accelerators),
             p.prefer[0].label(), " ".join(f"{f}/{q}" for f, q in p.convert_targets),
             "" if p.source is None or p.source.parent == BUILTIN_DIR else str(p.source)]
            for n, p in sorted(profiles.items())]
    print(format_table(["profile", "arch", "accelerators", "first choice", "converts to", "user file"], rows))
    return 0


def _detect(args) -> int:
    from devices.detect import detect
    from devices.profiles import ProfileError
    from edge_pose.select import DeviceError

    try:
        d = detect(profiles=_profiles())
    except ProfileError as exc:
        raise DeviceError(str(exc)) from None
    if args.json:
        print(json.dumps({"profile": d.profile.name, "reasons": d.reasons, "scores": d.scores,
                          "facts": asdict(d.facts)}, indent=1))
        return 0
    print(f"{d.profile.name}: {d.profile.description}")
    for r in d.reasons:
        print(f"  because {r}")
    if args.explain:
        f = d.facts
        print("facts read:")
        for label, value in (("architecture", f.machine), ("device-tree model", f.device_tree_model or "-"),
                             ("device-tree compatible", ", ".join(f.device_tree_compatible) or "-"),
                             ("/etc/nv_tegra_release", f.tegra_release or "-"), ("CPU model", f.cpu_model or "-"),
                             ("CPU count", f.cpu_count),
                             ("OpenVINO devices", ", ".join(f.openvino_devices) if f.openvino_devices is not None
                              else "openvino not installed"),
                             ("delegate libraries", ", ".join(f"{k}: {v}" for k, v in f.delegates.items()) or "none"),
                             ("runtimes", ", ".join(f.runtimes) or "none")):
            print(f"  {label:24s} {value}")
        print("profiles that matched (score): " + ", ".join(f"{n} ({s})" for n, s in
                                                            sorted(d.scores.items(), key=lambda x: -x[1])))
        print("preference order on this device:")
        for i, p in enumerate(d.profile.prefer, 1):
            print(f"  {i}. {p.label()}")
    return 0


def run(args) -> int:
    return _detect(args) if args.action == "detect" else _list(args)

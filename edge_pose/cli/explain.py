"""Show how a bundle (or a directory of bundles) would run here: the device profile, every candidate in order
with why it was chosen, skipped, failed or left on standby, and what the chosen one actually runs on."""
from __future__ import annotations

import json

HELP = "show the plan for running BUNDLE_OR_DIR on this device (chosen + every skipped candidate with reason)"


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE_OR_DIR", help="a bundle directory or a directory of bundles")
    parser.add_argument("--device", default="auto", help="device profile name or .toml file, or auto (default) to detect")
    parser.add_argument("--backend", choices=("litert", "openvino"), help="try this backend first")
    parser.add_argument("--accelerator", help="try this first: cpu|gpu|delegate (LiteRT), CPU|GPU|NPU|AUTO:... "
                                              "(OpenVINO)")
    parser.add_argument("--delegate", help="LiteRT external delegate library path to try first")
    parser.add_argument("--threads", type=int, help="threads (default: the profile's, else all cores)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def format_plan(plan, describe: dict | None = None) -> str:
    from edge_pose.cli.table import format_table

    lines = [f"device profile: {plan.profile.name} ({'; '.join(plan.detected)})"]
    rows = [[i, c.status, c.name, f"{c.format}/{c.precision}", f"{c.backend}:{c.accelerator}",
             c.threads or ("all" if c.status != "skipped" else ""), c.reason]
            for i, c in enumerate(plan.candidates, 1)]
    lines.append(format_table(["#", "status", "bundle", "format/precision", "backend:accelerator", "threads",
                               "reason"], rows))
    if describe:
        lines.append("runs: " + ", ".join(f"{k}={v}" for k, v in describe.items() if v is not None))
    return "\n".join(lines)


def run(args) -> int:
    from edge_pose.select import NothingRuns, open_best

    try:
        loaded = open_best(args.bundle, device=args.device, backend=args.backend, accelerator=args.accelerator,
                           threads=args.threads, delegate=args.delegate)
    except NothingRuns as exc:
        print(format_plan(exc.plan))
        raise
    describe = loaded.session.describe()
    if args.json:
        print(json.dumps({"profile": loaded.plan.profile.name, "why": loaded.plan.detected,
                          "candidates": [c.to_json() for c in loaded.plan.candidates], "runs": describe}, indent=1,
                         default=str))
    else:
        print(format_plan(loaded.plan, describe))
    return 0

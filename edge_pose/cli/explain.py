"""Show how a bundle (or a directory of bundles) would run here: the device profile, every candidate in order
with why it was chosen, skipped, failed or left on standby, and what the chosen one actually runs on."""
from __future__ import annotations

import json

HELP = "show the plan for running BUNDLE_OR_DIR on this device (chosen + every skipped candidate with reason)"


def add_arguments(parser) -> None:
    from edge_pose.cli import selection

    parser.add_argument("bundle", metavar="BUNDLE_OR_DIR", help="a bundle directory or a directory of bundles")
    selection.add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def format_plan(plan, describe: dict | None = None) -> str:
    from edge_pose.cli.table import format_table

    lines = [f"device profile: {plan.profile.name} ({'; '.join(plan.detected)})", f"ranked {plan.ranking}"]
    lines += [f"note: {n}" for n in plan.notes]
    # profile preferences no bundle here provides: one line after the table, not a row each (JSON keeps them all)
    absent = [c for c in plan.candidates if c.bundle is None and not c.refused and c.reason.startswith("no ")
              and c.reason.endswith("bundle here")]
    shown = [c for c in plan.candidates if all(c is not a for a in absent)]
    rows = [[i, c.status, c.name, f"{c.format}/{c.precision}", f"{c.backend}:{c.accelerator}",
             c.threads or ("all" if c.status != "skipped" else ""),
             f"{c.p50_ms:.2f}" if c.p50_ms is not None else "", c.reason]
            for i, c in enumerate(shown, 1)]
    lines.append(format_table(["#", "status", "bundle", "format/precision", "backend:accelerator", "threads",
                               "recorded p50 ms", "reason"], rows))
    if absent:
        lines.append("the profile also lists, but no bundle here provides: " +
                     ", ".join(f"{c.format}/{c.precision} on {c.backend}:{c.accelerator}" for c in absent))
    if describe:
        lines.append("runs: " + ", ".join(f"{k}={v}" for k, v in describe.items() if v is not None))
    return "\n".join(lines)


def plan_json(plan, describe: dict | None = None) -> dict:
    return {"profile": plan.profile.name, "why": plan.detected, "ranking": plan.ranking, "notes": plan.notes,
            "candidates": [c.to_json() for c in plan.candidates], "runs": describe}


def run(args) -> int:
    from edge_pose.cli import selection
    from edge_pose.select import NothingRuns, open_best

    try:
        loaded = open_best(args.bundle, **selection.options(args))
    except NothingRuns as exc:
        print(json.dumps(plan_json(exc.plan), indent=1, default=str) if args.json else format_plan(exc.plan))
        raise
    describe = loaded.session.describe()
    detector = _detector_plan(args)
    if args.json:
        doc = plan_json(loaded.plan, describe)
        if detector is not None:
            doc["detector"] = plan_json(detector.loaded.plan, detector.loaded.session.describe())
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(format_plan(loaded.plan, describe))
        if detector is not None:
            print("\ndetector:")
            print(format_plan(detector.loaded.plan, detector.loaded.session.describe()))
    return 0


def _detector_plan(args):
    """The detector that predict and serve would use with these bundles (one beside them), or None."""
    from edge_pose.cli import selection
    from edge_pose.detect.bundle import open_detector
    from edge_pose.estimator import find_detector

    path = find_detector(args.bundle)
    if path is None:
        return None
    opts = {k: v for k, v in selection.options(args).items() if k != "device"}
    return open_detector(path, device=args.device, **opts)

"""`edge-pose`: one command, subcommands as small modules.

Each subcommand module defines HELP (one line), `add_arguments(parser)` and `run(args) -> int`, and imports nothing
heavy at module level so that `edge-pose --help` stays fast on a device. The on-device commands are listed here;
workstation commands (convert, validate, models, demo) arrive as `edge_pose.commands` entry points from the
converters, so this package never imports them.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points

from edge_pose.errors import EdgePoseError

ON_DEVICE = {
    "devices": "edge_pose.cli.devices",
    "explain": "edge_pose.cli.explain",
    "predict": "edge_pose.cli.predict",
    "inspect": "edge_pose.cli.inspect",
    "bench": "edge_pose.cli.bench",
    "serve": "edge_pose.cli.serve",
}


def _commands() -> dict[str, str]:
    cmds = dict(ON_DEVICE)
    for ep in entry_points(group="edge_pose.commands"):
        cmds.setdefault(ep.name, ep.value)
    return cmds


def _load(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        return exc


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="edge-pose",
        description="Convert 2D pose models into edge bundles, run them on devices, measure them.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, module in sorted(_commands().items()):
        mod = _load(module)
        if isinstance(mod, ModuleNotFoundError):
            sub.add_parser(name, help=f"(unavailable: {mod.name} is not installed)")
            modules[name] = mod
            continue
        p = sub.add_parser(name, help=mod.HELP, description=(mod.__doc__ or mod.HELP).strip(),
                           epilog=getattr(mod, "EPILOG", None), formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        modules[name] = mod
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help()
        return 0
    mod = modules[args.command]
    if isinstance(mod, ModuleNotFoundError):
        print(f"edge-pose {args.command}: needs {mod.name}, which is not installed "
              f"(pip install 'edge-pose[convert]' on a workstation)", file=sys.stderr)
        return 2
    try:
        return int(mod.run(args) or 0)
    except EdgePoseError as exc:
        print(f"edge-pose {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system said no (a file where a directory must be, no space, no permission)
        if args.verbose:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"edge-pose {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The options every command that runs a bundle takes (explain, predict, bench, serve), with choices from the
registry, and their translation into edge_pose.select.open_best keyword arguments."""
from __future__ import annotations

from registry import BACKENDS, EXECUTION


def _accelerators() -> str:
    return "; ".join(f"{b.name}: {'|'.join(b.accelerators)}" for b in BACKENDS.values())


def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser, threads: bool = True) -> None:
    parser.add_argument("--device", default="auto",
                        help="device profile name or .toml file, or auto (default) to detect")
    parser.add_argument("--backend", choices=tuple(BACKENDS), help="try this backend first")
    parser.add_argument("--accelerator", help=f"try this accelerator first ({_accelerators()})")
    parser.add_argument("--delegate", help="LiteRT external delegate library path to try first")
    if threads:
        parser.add_argument("--threads", type=positive_int, help="threads (default: the profile's, else all cores)")
    parser.add_argument("--allow-degraded", action="store_true",
                        help="bundles the fidelity guard kept below their bar may be chosen")
    parser.add_argument("--allow-precision", action="append", default=[], choices=EXECUTION, metavar="P",
                        help="accept this execution precision where a device cannot compute in the one the bundle "
                             f"was validated at (repeatable; {', '.join(EXECUTION)})")


def options(args, threads=None) -> dict:
    """open_best keyword arguments from parsed args (`threads` overrides args.threads, e.g. per bench variant)."""
    return {"device": args.device, "backend": args.backend, "accelerator": args.accelerator,
            "delegate": getattr(args, "delegate", None),
            "threads": threads if threads is not None else getattr(args, "threads", None),
            "allow_degraded": args.allow_degraded, "allow_precision": tuple(args.allow_precision)}

"""List the model zoo: name, input size, parameters, MACs, keypoints and the checkpoint layouts each model reads.

Parameters and MACs come from building each model (no weights are loaded); the figures are cached per version of
the model code in $EDGE_POSE_CACHE_DIR (or $EDGE_POSE_CACHE; default ~/.cache/edge-pose), so later calls print at
once. `edge-pose convert NAME --checkpoint coco` fetches a model's official mmpose COCO checkpoint.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from edge_pose.errors import EdgePoseError

HELP = "list the model zoo (input size, parameters, MACs, keypoints, checkpoint layouts)"
COLUMNS = ("name", "input (HxW)", "params", "MACs", "keypoints", "checkpoints")


def add_arguments(parser) -> None:
    parser.add_argument("--input-size", metavar="HxW", help="measure at this input size instead of the default")
    parser.add_argument("--all-sizes", action="store_true", help="one row per input size of mmpose's configs")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (exact numbers)")
    parser.add_argument("--no-cache", action="store_true", help="rebuild every model instead of using the cache")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgePoseError(f"--input-size {text!r}: expected HxW, e.g. 256x192") from None
    return h, w


def _cache_file() -> Path:
    """One file per version of the code that determines the figures."""
    from importlib.metadata import version

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256(version("keras").encode())
    for path in sorted(root.glob("models/*.py")) + [root / "zoo.py", root / "macs.py"]:
        digest.update(path.name.encode() + path.read_bytes())
    chosen = os.environ.get("EDGE_POSE_CACHE_DIR") or os.environ.get("EDGE_POSE_CACHE")
    base = Path(chosen or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "edge-pose")
    return base / f"zoo-stats-{digest.hexdigest()[:16]}.json"


def _load_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the rebuild next time


def _measure(entry, size) -> dict:
    from converters.macs import count_macs, count_parameters

    model = entry.build(size, 17)
    return {"params": count_parameters(model), "macs": count_macs(model),
            "output": [int(d) for d in model.outputs[0].shape[1:]]}


def zoo_rows(sizes_for=None, use_cache: bool = True, progress=None) -> list[dict]:
    """One dict per (model, input size) with exact parameters and MACs."""
    from converters.zoo import ZOO

    sizes_for = sizes_for or (lambda entry: [entry.default_input_size])
    cache_path = _cache_file()
    cache = _load_cache(cache_path) if use_cache else {}
    todo = [(e, tuple(s)) for e in ZOO.values() for s in sizes_for(e)]
    rows = []
    for i, (entry, size) in enumerate(todo, 1):
        key = f"{entry.name}@{size[0]}x{size[1]}"
        if key not in cache:
            if progress:
                progress(f"building {entry.name} at {size[0]}x{size[1]} ({i}/{len(todo)})")
            cache[key] = _measure(entry, size)
            _save_cache(cache_path, cache)
        stats = cache[key]
        rows.append({"name": entry.name, "family": entry.family, "input_size": list(size), "params": stats["params"],
                     "macs": stats["macs"], "heatmap": stats["output"], "keypoints": entry.keypoints,
                     "checkpoint_layouts": list(entry.checkpoint_layouts)})
    return rows


def _human(n: int, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def format_table(rows: list[dict]) -> str:
    cells = [COLUMNS] + [(r["name"], f"{r['input_size'][0]}x{r['input_size'][1]}", _human(r["params"]),
                          _human(r["macs"]), r["keypoints"], ", ".join(r["checkpoint_layouts"])) for r in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args) -> int:
    from converters.cli_common import library_noise

    with library_noise(getattr(args, "verbose", 0)):
        return _run(args)


def _run(args) -> int:
    missing = [m for m in ("keras", "tensorflow") if importlib.util.find_spec(m) is None]
    if missing:
        raise EdgePoseError(f"edge-pose models needs {' and '.join(missing)}, which is not installed; "
                            f"install edge-pose[convert]")
    if args.input_size:
        size = _parse_size(args.input_size)
        sizes_for = lambda entry: [size]  # noqa: E731
    elif args.all_sizes:
        sizes_for = lambda entry: list(entry.input_sizes)  # noqa: E731
    else:
        sizes_for = None
    if args.input_size:
        from converters.zoo import ZOO, check_input_size

        for entry in ZOO.values():
            check_input_size(entry, size)
    try:
        rows = zoo_rows(sizes_for, use_cache=not args.no_cache,
                        progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    except ImportError as exc:
        raise EdgePoseError(f"edge-pose models cannot import {exc.name or exc}; install edge-pose[convert]") from None
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0

"""Print a bundle's manifest readably: what model, which precision, what input it takes, where it came from and how
close it stayed to its source. Reads the JSON only (and checks file hashes); loads no runtime."""
from __future__ import annotations

import json

HELP = "show what a bundle holds: model, input/output, keypoints, provenance, fidelity"


def add_arguments(parser) -> None:
    parser.add_argument("bundle", help="bundle directory (or a folder of bundles)")
    parser.add_argument("--json", action="store_true", help="print the raw manifest(s) as JSON")


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}={_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
        return "".join(f"\n    - {_value(x)}" for x in v)
    if isinstance(v, (list, tuple)):
        return "; ".join(str(x) for x in v)
    return str(v)


def _section(title: str, items: dict) -> list[str]:
    rows = [(k, _value(v)) for k, v in items.items() if v not in (None, "", [], {})]
    if not rows:
        return []
    width = max(len(k) for k, _ in rows)
    return [f"{title}:"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]


def describe(bundle) -> str:
    """The readable text for one loaded Bundle."""
    m = bundle.manifest
    inp, out, kp = m.input, m.output, m.keypoints
    quant = lambda q: f"scale {q.scale:.6g}, zero point {q.zero_point}" if q else None  # noqa: E731
    lines = [f"{bundle.path}  ({m.schema})"]
    lines += _section("model", {**m.model, "task": m.task, "format": m.format, "precision": m.precision,
                                "execution": f"{m.execution_precision} arithmetic (as validated; backends compile "
                                             "with it)",
                                "model file": m.model_file, "devices": ", ".join(m.devices)})
    lines += _section("files", {name: f"sha256 {digest[:16]}..., {(bundle.path / name).stat().st_size:,} bytes"
                                for name, digest in m.files.items()})
    if m.blobs:
        lines += _section("precompiled blobs", dict(m.blobs))
    lines += _section("input", {"name": inp.name, "size (h, w)": f"{inp.height} x {inp.width}",
                                "layout": inp.layout, "dtype": inp.dtype, "colour": inp.color, "mean": inp.mean,
                                "std": inp.std, "quantization": quant(inp.quantization)})
    lines += _section("output", {"name": out.name, "heatmaps (h, w)": f"{out.heatmap_height} x {out.heatmap_width}",
                                 "stride": f"{m.stride:g}", "layout": out.layout, "dtype": out.dtype,
                                 "quantization": quant(out.quantization)})
    lines += _section("keypoints", {"count": len(kp.names), "names": ", ".join(kp.names),
                                    "flip pairs": len(kp.flip_pairs), "skeleton edges": len(kp.skeleton),
                                    "OKS sigmas": "yes" if kp.sigmas else "no"})
    lines += _section("decode", {"method": m.decode.method, "blur kernel": m.decode.blur_kernel,
                                 "flip test": m.decode.flip_test})
    lines += _section("provenance", m.provenance)
    fid = dict(m.fidelity)
    lines += _section("fidelity", fid)
    return "\n".join(lines)


def run(args) -> int:
    import sys

    from edge_pose.bundle import resolve_bundles

    resolved = resolve_bundles(args.bundle)
    for r in resolved.refused:
        print(f"refused: {r.reason}", file=sys.stderr)
    bundles = resolved.bundles
    if args.json:
        data = [b.manifest.to_json() for b in bundles]
        if resolved.refused:  # keep the refused ones visible to scripts too
            out = {"bundles": data, "refused": [{"path": str(r.path), "reason": r.reason} for r in resolved.refused]}
        else:
            out = data[0] if len(data) == 1 else data
        print(json.dumps(out, indent=1, default=str))
        return 0
    print("\n\n".join(describe(b) for b in bundles))
    return 0

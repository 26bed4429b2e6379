"""Merge bench results from many devices into one markdown table and PNG charts."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from edge_pose.bench.schema import check_results
from edge_pose.errors import EdgePoseError


def load_results(paths: list[str]) -> list[dict]:
    docs = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EdgePoseError(f"{p}: unreadable bench results ({exc})") from None
        check_results(doc, p)
        docs.append(doc)
    return docs


def device_label(doc: dict) -> str:
    env = doc["environment"]
    return f"{doc['device'].get('profile') or '?'} ({env.get('hostname') or '?'})"


def in_use(runtime: dict) -> str:
    """The accelerator as the runtime reports it: OpenVINO's execution devices, LiteRT's applied delegate."""
    devices = runtime.get("execution_devices")
    if devices:
        return ",".join(devices) if isinstance(devices, list) else str(devices)
    if runtime.get("backend") == "litert":
        return runtime.get("delegate") if runtime.get("delegate_applied") else "cpu (no delegate)"
    return str(runtime.get("accelerator") or "?")


def rows(docs: list[dict]) -> list[dict]:
    """One flat row per measured variant, from every file; nothing is dropped or averaged away."""
    out = []
    for doc in docs:
        for r in doc["results"]:
            if "latency" not in r:
                continue
            rt = r.get("runtime", {})
            out.append({
                "device": device_label(doc), "model": r["model"], "format": r["format"],
                "precision": r["precision"], "backend": rt.get("backend", "?"),
                "accelerator": in_use(rt),
                "threads": rt.get("threads"), **r["latency"], "load_s": r["load_s"],
            })
    return out


def speedups(table: list[dict]) -> list[dict]:
    """int8/fp16/dynamic over fp32 on the same device, model, format, backend, accelerator and threads."""
    base = {}
    for r in table:
        if r["precision"] == "fp32":
            base[(r["device"], r["model"], r["format"], r["backend"], r["accelerator"], r["threads"])] = r["p50_ms"]
    out = []
    for r in table:
        key = (r["device"], r["model"], r["format"], r["backend"], r["accelerator"], r["threads"])
        if r["precision"] != "fp32" and key in base:
            out.append({**{k: r[k] for k in ("device", "model", "format", "backend", "accelerator", "threads",
                                              "precision")}, "speedup": base[key] / r["p50_ms"]})
    return out


def markdown(table: list[dict], ups: list[dict]) -> str:
    lines = ["# edge-pose latency", "",
             "| device | model | format | precision | backend | accelerator | threads | p50 ms | p90 ms | p99 ms "
             "| std ms | FPS | load s |",
             "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(table, key=lambda r: (r["device"], r["model"], r["format"], r["precision"], str(r["threads"]))):
        lines.append(f"| {r['device']} | {r['model']} | {r['format']} | {r['precision']} | {r['backend']} | "
                     f"{r['accelerator']} | {r['threads']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['std_ms']:.2f} | {r['throughput_per_s']:.1f} | {r['load_s']:.2f} |")
    if ups:
        lines += ["", "## Speedup over fp32 (p50)", "",
                  "| device | model | format | backend | threads | precision | speedup |",
                  "|---|---|---|---|---|---|---:|"]
        for u in sorted(ups, key=lambda u: (u["device"], u["model"], u["format"], u["precision"])):
            lines.append(f"| {u['device']} | {u['model']} | {u['format']} | {u['backend']} | {u['threads']} | "
                         f"{u['precision']} | {u['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def _grouped_barh(rows: list, labels: list[str], series: dict[str, dict], xlabel: str, title: str, path: Path,
                  line_at: float | None = None) -> Path:
    """One horizontal bar per (row, series): `series[name][row] = (value, whisker)`; rows top to bottom."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(rows) * max(1, len(series))))
    height = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        present = [(j, values[row]) for j, row in enumerate(rows) if row in values]
        ax.barh([j + i * height for j, _ in present], [v for _, (v, _) in present], height,
                xerr=[[0] * len(present), [e for _, (_, e) in present]], capsize=3, label=name)
    if line_at is not None:
        ax.axvline(line_at, color="black", linewidth=0.8)
    ax.set_yticks([j + height * (len(series) - 1) / 2 for j in range(len(rows))])
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _threads(t) -> str:
    return f" {t}t" if t else ""


def charts(table: list[dict], ups: list[dict], out_dir: Path) -> list[Path]:
    """latency.png (p50 with p90 whiskers per variant, one series per device) and speedup.png."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        raise EdgePoseError("charts need matplotlib: pip install 'edge-pose[bench]'") from None
    variants = sorted({(r["model"], r["format"], r["precision"], r["threads"]) for r in table}, key=str)
    latency = defaultdict(dict)
    for r in sorted(table, key=lambda r: r["device"]):
        latency[r["device"]][(r["model"], r["format"], r["precision"], r["threads"])] = (
            r["p50_ms"], r["p90_ms"] - r["p50_ms"])
    written = [_grouped_barh(variants, [f"{m} {f} {p}{_threads(t)}" for m, f, p, t in variants], dict(latency),
                             "latency p50 (ms), whisker to p90", "Inference latency per device and variant",
                             out_dir / "latency.png")]
    if ups:
        keys = sorted({(u["device"], u["model"], u["format"], u["backend"], u["threads"]) for u in ups}, key=str)
        speed = defaultdict(dict)
        for u in sorted(ups, key=lambda u: u["precision"]):
            speed[u["precision"]][(u["device"], u["model"], u["format"], u["backend"], u["threads"])] = (
                u["speedup"], 0.0)
        written.append(_grouped_barh(keys, [f"{d}: {m} {f}/{b}{_threads(t)}" for d, m, f, b, t in keys], dict(speed),
                                     "speedup over fp32 (p50)", "Quantisation speedup over fp32",
                                     out_dir / "speedup.png", line_at=1.0))
    return written


def write_report(paths: list[str], out_dir: str) -> dict[str, Path]:
    docs = load_results(paths)
    table = rows(docs)
    if not table:
        raise EdgePoseError(f"{', '.join(paths)}: no measured variants to report")
    ups = speedups(table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    md.write_text(markdown(table, ups))
    merged = out / "merged.json"
    merged.write_text(json.dumps({"schema": "edge-pose/bench-report@1", "sources": paths, "rows": table,
                                  "speedups": ups}, indent=1))
    written = {"markdown": md, "json": merged}
    for png in charts(table, ups, out):
        written[png.stem] = png
    return written

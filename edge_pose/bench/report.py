"""Merge bench results from many devices into one markdown table and PNG charts."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from edge_pose.bench.schema import check_results
from edge_pose.errors import EdgePoseError


def load_results(paths: list[str]) -> list[dict]:
    """The results files, each tagged with its run name (`_run`): what tells two runs on one device apart."""
    docs = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EdgePoseError(f"{p}: unreadable bench results ({exc})") from None
        check_results(doc, p)
        docs.append(doc)
    for doc, name in zip(docs, run_names(paths, docs)):
        doc["_run"] = name
    return docs


def run_names(paths: list[str], docs: list[dict]) -> list[str]:
    """A short unique name per results file: its own `run` name if it records one, else the file name's stem; a
    name used twice gets the run's creation time, then a number."""
    names = []
    for path, doc in zip(paths, docs):
        rec = doc.get("run")
        name = rec if isinstance(rec, str) else rec.get("name") if isinstance(rec, dict) else None
        names.append(str(name or Path(path).stem))
    for i, name in enumerate(list(names)):
        if names.count(name) > 1:
            names[i] = f"{name} {docs[i].get('created', '')}".strip()
    seen: dict[str, int] = {}
    for i, name in enumerate(list(names)):
        if names.count(name) > 1:
            seen[name] = seen.get(name, 0) + 1
            names[i] = f"{name} #{seen[name]}"
    return names


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
    """One flat row per measured variant, from every file; nothing is dropped or averaged away. Each row names its
    run (results file) and device, so equal variants from two runs stay two rows."""
    out = []
    for i, doc in enumerate(docs, 1):
        for r in doc["results"]:
            if "latency" not in r:
                continue
            rt = r.get("runtime", {})
            out.append({
                "run": doc.get("_run") or f"run {i}", "device": device_label(doc), "variant": r["label"],
                "model": r["model"], "format": r["format"], "precision": r["precision"],
                "backend": rt.get("backend", "?"), "accelerator": in_use(rt),
                "threads": rt.get("threads"), **r["latency"], "load_s": r["load_s"],
            })
    return out


_SAME = ("device", "model", "format", "backend", "accelerator", "threads")


def speedups(table: list[dict]) -> list[dict]:
    """int8/fp16/dynamic over fp32 on the same device, model, format, backend, accelerator and threads; the fp32
    of the same run when it has one, else of another run on that device (named in `fp32_run`)."""
    base: dict[tuple, list[dict]] = defaultdict(list)
    for r in table:
        if r["precision"] == "fp32":
            base[tuple(r[k] for k in _SAME)].append(r)
    out = []
    for r in table:
        candidates = base.get(tuple(r[k] for k in _SAME))
        if r["precision"] == "fp32" or not candidates:
            continue
        ref = next((b for b in candidates if b["run"] == r["run"]), candidates[0])
        out.append({**{k: r[k] for k in ("run", "variant", *_SAME, "precision")}, "fp32_run": ref["run"],
                    "fp32_variant": ref["variant"], "speedup": ref["p50_ms"] / r["p50_ms"]})
    return out


def _threads(t) -> str:
    return f" {t}t" if t else ""


_NATIVE_BACKEND = {"tflite": "litert", "openvino": "openvino"}


def _runs_on(fmt: str, backend: str) -> str:
    """'tflite', or 'onnx via onnxruntime' style when the backend is not the format's own runtime."""
    return fmt if _NATIVE_BACKEND.get(fmt) == backend else f"{fmt} via {backend}"


LATENCY_COLUMNS = ("run", "device", "variant", "model", "format", "precision", "backend", "accelerator", "threads",
                   "p50 ms", "p90 ms", "p99 ms", "std ms", "FPS", "load s")
SPEEDUP_COLUMNS = ("run", "device", "variant", "model", "format", "backend", "threads", "precision", "speedup",
                   "fp32 from")


def latency_cells(table: list[dict]) -> list[list]:
    return [[r["run"], r["device"], r["variant"], r["model"], r["format"], r["precision"], r["backend"],
             r["accelerator"], r["threads"], f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}",
             f"{r['std_ms']:.2f}", f"{r['throughput_per_s']:.1f}", f"{r['load_s']:.2f}"] for r in table]


def speedup_cells(ups: list[dict]) -> list[list]:
    return [[u["run"], u["device"], u["variant"], u["model"], u["format"], u["backend"], u["threads"],
             u["precision"], f"{u['speedup']:.2f}x",
             u["fp32_variant"] if u["fp32_run"] == u["run"] else f"{u['fp32_variant']} ({u['fp32_run']})"]
            for u in ups]


def markdown(table: list[dict], ups: list[dict]) -> str:
    from edge_pose.cli.table import markdown_table

    lines = ["# edge-pose latency", "", markdown_table(LATENCY_COLUMNS, latency_cells(table),
                                                      right=range(8, len(LATENCY_COLUMNS)))]
    if ups:
        lines += ["", "## Speedup over fp32 (p50)", "",
                  markdown_table(SPEEDUP_COLUMNS, speedup_cells(ups), right=(6, 8))]
    return "\n".join(lines) + "\n"


def _bar_keys(items: list[dict], key) -> list[tuple]:
    """key(item) per item, extended by the variant label where one series would otherwise hold two bars on one
    row (two bundles of the same model, format and precision in one run): every item keeps its own bar."""
    keys = [key(it) for it in items]
    counts = defaultdict(int)
    for it, k in zip(items, keys):
        counts[(it["_series"], k)] += 1
    return [k + (it["variant"],) if counts[(it["_series"], k)] > 1 else k for it, k in zip(items, keys)]


def _grouped_barh(items: list[dict], keys: list[tuple], label, value: str, whisker: str | None, xlabel: str,
                  title: str, fmt: str, reference: float | None = None):
    """A horizontal bar chart, one bar per item: rows = distinct keys (top to bottom in first-seen order), one
    colour per series. The legend goes below the axes, outside them, so it never covers a bar."""
    import matplotlib.pyplot as plt

    row_keys = list(dict.fromkeys(keys))
    series = list(dict.fromkeys(it["_series"] for it in items))
    height = 0.8 / max(1, len(series))
    n_bars = len(row_keys) * len(series)
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.3 * n_bars + 0.25 * len(series)), layout="constrained")
    for i, name in enumerate(series):
        mine = [(row_keys.index(k), it) for it, k in zip(items, keys) if it["_series"] == name]
        ys = [j + i * height for j, _ in mine]
        vals = [it[value] for _, it in mine]
        errs = [[0] * len(mine), [it[whisker] - it[value] for _, it in mine]] if whisker else None
        ax.barh(ys, vals, height, xerr=errs, capsize=3 if whisker else 0, label=name)
        for y, (_, it) in zip(ys, mine):  # the value just past the bar (or its whisker), never on top of it
            ax.annotate(fmt % it[value], (it[whisker] if whisker else it[value], y), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7, zorder=3,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})  # readable over the 1.0x line
    if reference is not None:
        ax.axvline(reference, color="black", linestyle="--", linewidth=1.2, label=f"{reference:.1f}x = fp32 speed",
                   zorder=2)
    ax.set_yticks([j + height * (len(series) - 1) / 2 for j in range(len(row_keys))])
    ax.set_yticklabels([label(k) for k in row_keys], fontsize=8)
    ax.invert_yaxis()
    ends = [max(it[value], it[whisker] if whisker else 0, reference or 0) for it in items]
    ax.set_xlim(0, 1.15 * max(ends))  # room for the value labels past the longest bar
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    handles, _ = ax.get_legend_handles_labels()
    fig.legend(loc="outside lower center", ncols=min(3, len(handles)), fontsize=8, frameon=False)
    return fig


def latency_figure(table: list[dict]):
    """p50 per table row (whisker to p90): rows are variants, one colour per run and device."""
    items = [{**r, "_series": f"{r['run']}: {r['device']}"} for r in table]
    keys = _bar_keys(items, lambda r: (r["model"], r["format"], r["precision"], r["backend"], r["threads"]))
    return _grouped_barh(items, keys, lambda k: f"{k[0]} {_runs_on(k[1], k[3])} {k[2]}{_threads(k[4])}" +
                         (f" [{k[5]}]" if len(k) > 5 else ""), "p50_ms", "p90_ms",
                         "latency p50 (ms), whisker to p90", "Inference latency per variant, run and device",
                         "%.1f")


def _where(run: str, device: str) -> str:
    profile = device.split(" (")[0]
    return run if profile in run else f"{run} ({profile})"


def speedup_figure(ups: list[dict]):
    """Speedup over fp32 per speedup row: rows are run/device/model/format, one colour per precision."""
    items = [{**u, "_series": u["precision"]} for u in ups]
    keys = _bar_keys(items, lambda u: (u["run"], u["device"], u["model"], u["format"], u["backend"], u["threads"]))
    return _grouped_barh(items, keys, lambda k: f"{_where(k[0], k[1])}: {k[2]} {_runs_on(k[3], k[4])}"
                         f"{_threads(k[5])}" +
                         (f" [{k[6]}]" if len(k) > 6 else ""), "speedup", None,
                         "speedup over fp32 (p50; above 1: faster)", "Quantisation speedup over fp32", "%.2fx",
                         reference=1.0)


def charts(table: list[dict], ups: list[dict], out_dir: Path) -> list[Path]:
    """latency.png (every table row) and speedup.png (every speedup row)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgePoseError("charts need matplotlib: pip install 'edge-pose[bench]'") from None
    written = []
    for name, make, data in (("latency", latency_figure, table), ("speedup", speedup_figure, ups)):
        if not data:
            continue
        fig = make(data)
        fig.savefig(out_dir / f"{name}.png", dpi=110)
        plt.close(fig)
        written.append(out_dir / f"{name}.png")
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
    merged.write_text(json.dumps({"schema": "edge-pose/bench-report@1", "sources": paths,
                                  "runs": [d["_run"] for d in docs], "rows": table, "speedups": ups}, indent=1))
    written = {"markdown": md, "json": merged}
    for png in charts(table, ups, out):
        written[png.stem] = png
    return written

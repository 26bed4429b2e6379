"""What people compare: the bench table and `bench report` aligned whatever the names' length, every row naming
its run and device, and charts with one bar per row, a 1.0x line and a legend clear of the bars. Results files are
written here in the schema `edge-pose bench` writes (test_bench.py measures real bundles)."""
from __future__ import annotations

import json

import pytest

from edge_pose.bench.report import latency_figure, load_results, rows, speedup_figure, speedups, write_report
from edge_pose.bench.schema import SCHEMA
from edge_pose.cli.table import format_table, markdown_table

LONG = "simplebaseline-r152-with-a-very-long-custom-bundle-name-openvino-int8"


def _result(label, model, fmt, precision, p50, threads=2):
    backend = "litert" if fmt == "tflite" else "openvino"
    runtime = {"backend": backend, "threads": threads}
    runtime.update({"execution_devices": ["CPU"]} if backend == "openvino" else
                   {"delegate": "xnnpack", "delegate_applied": True})
    lat = {"n": 30, "min_ms": p50 * 0.9, "p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2,
           "max_ms": p50 * 1.3, "mean_ms": p50, "std_ms": p50 * 0.05, "throughput_per_s": 1000 / p50}
    return {"label": label, "bundle": f"/b/{label}", "model": model, "format": fmt, "precision": precision,
            "runtime": runtime, "load_s": 0.3, "first_inference_ms": 2 * p50, "latency": lat}


def _doc(profile, host, scale=1.0, created="2026-12-01T08:00:00Z"):
    results = [_result("litehrnet-18-tflite-fp32@2t", "litehrnet-18", "tflite", "fp32", 30 * scale),
               _result("litehrnet-18-tflite-int8@2t", "litehrnet-18", "tflite", "int8", 42 * scale),
               _result("litehrnet-18-openvino-fp32@2t", "litehrnet-18", "openvino", "fp32", 18 * scale),
               _result("litehrnet-18-openvino-int8@2t", "litehrnet-18", "openvino", "int8", 14 * scale),
               _result(LONG, "simplebaseline-r152", "openvino", "int8", 220 * scale, None),
               _result("sb-r152-openvino-fp32", "simplebaseline-r152", "openvino", "fp32", 400 * scale, None)]
    return {"schema": SCHEMA, "created": created, "device": {"profile": profile},
            "environment": {"hostname": host, "cpu_model": "x", "cpu_count": 2, "runtimes": {}},
            "settings": {"runs": 30, "warmup": 5, "interleaved": True}, "results": results, "peak_rss_mb": 99.0}


@pytest.fixture()
def three_runs(tmp_path):
    """Two runs on the same device with identical variants (before/after a change) and one on another device."""
    paths = []
    for name, doc in (("before", _doc("x86", "host-1")), ("after", _doc("x86", "host-1", 0.8, "2026-12-01T09:00Z")),
                      ("pi5", _doc("rpi5", "pi5-lab", 3.5))):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        paths.append(str(path))
    return paths


def test_format_table_widths_come_from_content():
    text = format_table(["variant", "p50 ms"], [[LONG, "220.00"], ["short", "1.50"]], right={1})
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # numbers right-aligned: every line ends in the same column
    assert lines[2].index("220.00") == lines[0].index("p50 ms")
    assert lines[3].endswith("  1.50")


def test_bench_cli_table_aligned_with_long_variant_names(capsys):
    from edge_pose.cli.bench import _print_table

    _print_table(_doc("x86", "h"))
    lines = capsys.readouterr().out.splitlines()
    table = lines[:-1]  # the last line is the peak RSS
    assert len(table) == 2 + 6 and len({len(line) for line in table}) == 1, "\n".join(table)
    p50 = table[0].index("p50 ms") + len("p50 ms")
    assert all(line[p50 - 1] != " " for line in table[2:])  # every p50 figure ends under its header


def test_report_rows_name_their_run_and_device(three_runs, tmp_path):
    docs = load_results(three_runs)
    table = rows(docs)
    assert len(table) == 18 and {r["run"] for r in table} == {"before", "after", "pi5"}
    key = ("device", "variant", "model", "format", "precision", "backend", "accelerator", "threads")
    same = [r for r in table if r["variant"] == LONG and r["device"].startswith("x86")]
    assert len(same) == 2 and same[0]["run"] != same[1]["run"]
    assert {tuple(r[k] for k in key) for r in same} == {tuple(same[0][k] for k in key)}  # same key, two rows
    written = write_report(three_runs, str(tmp_path / "report"))
    md = written["markdown"].read_text().splitlines()
    body = [ln for ln in md if ln.startswith("| before") or ln.startswith("| after") or ln.startswith("| pi5")]
    assert len(body) == 18 + 9  # latency rows, then the 3 int8 speedups of each run
    latency_table = md[2:2 + 2 + 18]
    assert len({len(line) for line in latency_table}) == 1  # padded: aligned as plain text too
    assert any(LONG in ln and "| before" in ln for ln in md) and any(LONG in ln and "| after" in ln for ln in md)


def test_speedups_prefer_their_own_runs_fp32():
    docs = [_doc("x86", "h"), _doc("x86", "h", 0.5)]
    docs[0]["_run"], docs[1]["_run"] = "slow", "fast"
    ups = speedups(rows(docs))
    assert len(ups) == 6 and all(u["fp32_run"] == u["run"] for u in ups)
    lite = {round(u["speedup"], 3) for u in ups if u["model"] == "litehrnet-18"}
    assert lite == {round(30 / 42, 3), round(18 / 14, 3)}


def _bars(fig) -> int:
    from matplotlib.container import BarContainer

    return sum(len(c.patches) for ax in fig.axes for c in ax.containers if isinstance(c, BarContainer))


def _legend_clear_of_axes(fig) -> bool:
    fig.canvas.draw()
    ax = fig.axes[0].get_window_extent()
    legend = fig.legends[0].get_window_extent()
    return legend.y1 <= ax.y0 or legend.x0 >= ax.x1


def test_charts_have_one_bar_per_row_a_reference_line_and_a_legend_off_the_bars(three_runs):
    import matplotlib

    matplotlib.use("Agg")
    table = rows(load_results(three_runs))
    ups = speedups(table)
    fig = latency_figure(table)
    assert _bars(fig) == len(table) == 18 and _legend_clear_of_axes(fig)
    assert len(fig.legends[0].get_texts()) == 3  # one entry per run and device
    fig = speedup_figure(ups)
    assert _bars(fig) == len(ups) == 9 and _legend_clear_of_axes(fig)
    lines = [ln for ln in fig.axes[0].get_lines() if list(ln.get_xdata()) == [1.0, 1.0]]
    assert lines, "no 1.0x reference line"
    assert fig.axes[0].get_xlim()[0] == 0 and fig.axes[0].get_xlim()[1] > max(u["speedup"] for u in ups)


def test_two_bundles_of_one_variant_in_one_run_keep_their_own_bars():
    doc = _doc("x86", "h")
    doc["results"].append(_result("litehrnet-18-tflite-int8-recalibrated@2t", "litehrnet-18", "tflite", "int8", 40))
    table = rows([doc])
    fig = latency_figure(table)
    assert _bars(fig) == len(table) == 7
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("recalibrated" in t for t in labels)


def test_markdown_table_is_valid_and_padded():
    text = markdown_table(["a", "n"], [["long name", "1.0"], ["b", "22.5"]], right={1})
    lines = text.splitlines()
    assert lines[1] == "|-----------|-----:|" and len({len(ln) for ln in lines}) == 1

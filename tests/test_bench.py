"""edge-pose bench: real bundles on real runtimes, the results schema, and the cross-device report."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_pose.bench.environment import collect
from edge_pose.bench.report import speedups, rows, write_report
from edge_pose.bench.schema import SCHEMA, check_results
from edge_pose.bench.stats import latency_stats, spread_warning
from edge_pose.errors import EdgePoseError
from shared import coco_mini

CLI = [str(Path(sys.executable).with_name("edge-pose"))]


def test_latency_stats_percentiles_and_spread():
    s = latency_stats([0.010] * 90 + [0.020] * 10)
    assert s["n"] == 100 and s["p50_ms"] == pytest.approx(10.0) and s["max_ms"] == pytest.approx(20.0)
    assert s["throughput_per_s"] == pytest.approx(1000 / 11.0)
    assert spread_warning(s, "a") is None
    wide = latency_stats(np.linspace(0.005, 0.030, 50))
    assert "wide spread" in spread_warning(wide, "b")


def test_environment_reads_fake_sysfs(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor : 0\nModel : Raspberry Pi 5 Model B Rev 1.0\n")
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("61250\n")
    (zone / "type").write_text("cpu-thermal\n")
    freq = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    freq.mkdir(parents=True)
    (freq / "scaling_governor").write_text("ondemand\n")
    (freq / "scaling_cur_freq").write_text("2400000\n")
    env = collect(tmp_path)
    assert env["cpu_model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert env["temperatures_c"] == {"cpu-thermal": 61.25}
    assert env["cpufreq"]["cpu0"] == {"governor": "ondemand", "cur_mhz": 2400.0, "max_mhz": None}
    assert "numpy" in env["runtimes"]


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory, cpm_bundle, simplebaseline_ov_bundle):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(CLI + ["bench", str(cpm_bundle.path), str(simplebaseline_ov_bundle.path),
                                 "--threads", "1,2", "--runs", "6", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def test_bench_writes_schema_valid_results(bench_json):
    out, proc = bench_json
    doc = json.loads(out.read_text())
    check_results(doc, str(out))
    assert doc["schema"] == SCHEMA and doc["settings"]["interleaved"] is True
    assert len(doc["results"]) == 4  # 2 bundles x 2 thread counts
    by = {(r["format"], r["threads_requested"]): r for r in doc["results"]}
    assert by[("tflite", 2)]["runtime"]["backend"] == "litert"
    assert by[("tflite", 2)]["runtime"]["threads"] == 2
    assert by[("openvino", 1)]["runtime"]["execution_devices"] == ["CPU"]  # as OpenVINO reports it
    for r in doc["results"]:
        lat = r["latency"]
        assert lat["n"] == 6 and lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["max_ms"]
        assert r["load_s"] > 0 and r["first_inference_ms"] > 0
    assert doc["peak_rss_mb"] > 10 and doc["environment"]["cpu_count"] >= 1
    assert "p50 ms" in proc.stdout  # the printed table


def _as_other_device(doc: dict, name: str, factor: float, precision: str | None = None) -> dict:
    """The same results as if measured on another device (a different profile and host, scaled latencies)."""
    other = json.loads(json.dumps(doc))
    other["device"]["profile"], other["environment"]["hostname"] = name, f"{name}-host"
    for r in other["results"]:
        r["precision"] = precision or r["precision"]
        for k in ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"):
            r["latency"][k] *= factor
    return other


def test_report_merges_devices_without_loss(bench_json, tmp_path):
    out, _ = bench_json
    doc = json.loads(out.read_text())
    pi = tmp_path / "pi.json"
    pi.write_text(json.dumps(_as_other_device(doc, "rpi5", 4.0)))
    pi_int8 = tmp_path / "pi-int8.json"
    pi_int8.write_text(json.dumps(_as_other_device(doc, "rpi5", 2.0, precision="int8")))
    written = write_report([str(out), str(pi), str(pi_int8)], str(tmp_path / "report"))
    table = rows([json.loads(Path(p).read_text()) for p in (out, pi, pi_int8)])
    assert len(table) == 12  # every variant from every file
    ups = speedups(table)
    assert len(ups) == 4 and all(u["speedup"] == pytest.approx(2.0) for u in ups)
    md = written["markdown"].read_text()
    assert "rpi5 (rpi5-host)" in md and "## Speedup over fp32" in md and "2.00x" in md
    for png in ("latency", "speedup"):
        data = written[png].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    merged = json.loads(written["json"].read_text())
    assert len(merged["rows"]) == 12


def test_report_rejects_foreign_json_in_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "something/else@3", "results": []}))
    with pytest.raises(EdgePoseError, match="bad.json: schema"):
        write_report([str(bad)], str(tmp_path / "r"))
    proc = subprocess.run(CLI + ["bench", "report", str(bad), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "bad.json" in proc.stderr


def test_bench_pipeline_times_each_stage_streamed_and_serial(cpm_bundle, tmp_path):
    image = coco_mini() / "000000000785.jpg"
    out = tmp_path / "p.json"
    proc = subprocess.run(CLI + ["bench", str(cpm_bundle.path), "--runs", "12", "--warmup", "0",
                                 "--pipeline", str(image), "--pipeline-mode", "both", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    stream, serial = doc["pipeline"]
    assert (stream["mode"], serial["mode"]) == ("stream", "serial")
    for p in (stream, serial):
        assert set(p["stage_p50_ms"]) == {"read", "boxes", "detect", "carry", "crop", "infer", "decode", "wait",
                                          "other", "total"}
        assert set(p["stage_mean_ms"]) == set(p["stage_p50_ms"])
        assert p["stage_p50_ms"]["infer"] > 0 and p["stage_p50_ms"]["read"] > 0 and p["fps"] > 0
        assert p["people_per_frame"] == 1 and p["frames"] == 12
        assert p["inference_fps"] > 0 and p["inference_bound_fps"] == p["inference_fps"]  # no flip test here
        # inference alone is timed in blocks alternating with the pipeline's: 12 frames = a block of 10, one of 2
        assert len(p["block_ratios"]) == 2 and "12 bare runtime calls" in p["inference_timing"]
        assert p["ratio_to_inference"] == pytest.approx(p["fps"] / p["inference_bound_fps"])
    assert "e2e/inference" in proc.stdout and "(stream, boxes frame)" in proc.stdout

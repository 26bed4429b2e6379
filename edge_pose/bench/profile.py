"""Why a bundle is as fast as it is: `profile_bundle(path) -> dict` and `render(profile) -> str`.

LiteRT (.tflite): delegate partitions, the ops XNNPACK left to TFLite's own kernels, quantise / requantise /
dequantise ops, whole-model p50 with XNNPACK and with TFLite's kernels only, and per-op times (each op timed
alone: ai-edge-litert has no op profiler reachable from Python; see edge_pose.bench.profile_litert).
OpenVINO (.xml): per-layer times from the plugin's performance counters, with quantise/convert layers, reorders and
requantising concatenations counted apart (edge_pose.bench.profile_openvino).

Each runtime is imported only inside the function that profiles with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_pose.errors import EdgePoseError


def _model_file(path: Path) -> tuple[Path, dict[str, Any]]:
    """A bundle directory -> its model file and manifest facts; a bare .tflite / .xml is taken as it is."""
    if path.is_dir():
        from edge_pose.bundle import load_bundle

        bundle = load_bundle(path)
        return bundle.model_path, {"bundle": str(path), "precision": bundle.manifest.precision,
                                   "model_name": bundle.manifest.model.get("name")}
    if path.suffix in (".tflite", ".xml") and path.is_file():
        return path, {}
    raise EdgePoseError(f"{path}: not a bundle directory, a .tflite or an OpenVINO .xml")


def profile_bundle(bundle_path, top: int = 15, threads: int | None = 2, runs: int = 20, per_op: bool = True,
                   config: dict[str, Any] | None = None, builtin: bool = False) -> dict[str, Any]:
    """Profile one bundle (or model file) on this machine's CPU. `config`: extra OpenVINO compile properties
    (e.g. {"INFERENCE_PRECISION_HINT": "f32"}); `per_op`: LiteRT's isolated per-op timing (a few seconds);
    `builtin`: also time the .tflite on TFLite's own kernels without XNNPACK (int8: ~1 s per inference)."""
    model, facts = _model_file(Path(bundle_path))
    if model.suffix == ".tflite":
        from edge_pose.bench.profile_litert import profile_tflite

        out = profile_tflite(str(model), top=top, threads=threads or 2, runs=runs, per_op=per_op, builtin=builtin)
    else:
        from edge_pose.bench.profile_openvino import profile_openvino

        if config is None and facts.get("precision") in ("fp32", "int8"):
            # the precision the bundle was validated at: CPUs with native bf16 would otherwise compile in bf16
            config = {"INFERENCE_PRECISION_HINT": "f32"}
        out = profile_openvino(str(model), top=top, threads=threads, runs=runs, config=config)
    return {**facts, **out}


def _types(rows: list[dict], limit: int) -> list[str]:
    return [f"  {r['op']:<22} x{r['count']:<4} {r['ms']:8.3f} ms  {100 * r['share']:5.1f}%" for r in rows[:limit]]


def render(p: dict[str, Any], limit: int = 8) -> str:
    """The profile as a few readable lines."""
    head = f"{p.get('bundle') or p['model']} ({p['runtime']}, {p.get('threads')} threads)"
    lines = [head]
    if p["format"] == "tflite":
        q = p.get("quantization", {})
        outside = ", ".join(f"{k} x{v}" for k, v in p["outside_counts"].items()) or "none"
        lat = p.get("latency", {})
        lines.append(f"  {p['nodes']} ops, {p['delegate_partitions']} XNNPACK partition(s); outside XNNPACK: "
                     f"{outside}")
        lines.append(f"  requantize {q.get('requantize', 0)}, quantize {q.get('quantize', 0)}, dequantize "
                     f"{q.get('dequantize', 0)} (model I/O excluded), requantising concatenations "
                     f"{q.get('requantising_concatenation', 0)}, float compute ops {p.get('float_compute_ops', 0)}")
        lines.append("  p50 " + ", ".join(f"{k.replace('_p50_ms', '')} {v:.2f} ms" for k, v in lat.items()))
        times = p.get("op_times")
        if times:
            lines.append(f"  per op type, each op timed alone ({times['distinct_signatures']} distinct ops; sum "
                         f"{times['sum_ms']:.2f} ms vs whole model {lat.get('xnnpack_p50_ms', float('nan')):.2f} ms):")
            lines += _types(times["by_type"], limit)
            lines.append("  slowest ops:")
            lines += [f"    #{r['index']:<5} {r['op']:<20} {r['ms']:.3f} ms" + ("" if r.get("xnnpack") else
                                                                                  "  (not XNNPACK)")
                      for r in times["ops"][:limit]]
        return "\n".join(lines)
    q = p["quantization"]
    lines.append(f"  {p['layers_executed']} layers executed, inference precision {p.get('inference_precision')}, "
                 f"p50 {p['latency']['p50_ms']:.2f} ms, counters sum {p['sum_ms']:.2f} ms")
    lines.append(f"  quantize/convert {q['quantize_convert_layers']} ({q['quantize_convert_ms']:.2f} ms), layers with a "
                 f"fused FakeQuantize {q['layers_with_fused_fakequantize']} "
                 f"({q['layers_with_fused_fakequantize_ms']:.2f} ms), reorders "
                 f"{q['reorders']} ({q['reorder_ms']:.2f} ms), concatenations {q['concatenations']} "
                 f"({q['concatenation_ms']:.2f} ms; requantising {q['requantising_concatenations']}, "
                 f"{q['requantising_concatenation_ms']:.2f} ms)")
    lines += _types(p["by_type"], limit)
    lines.append("  slowest layers:")
    lines += [f"    {r['ms']:7.3f} ms  {r['type']:<16} {r['exec_type']:<18} {r['name'][-50:]}"
              for r in p["top"][:limit]]
    return "\n".join(lines)

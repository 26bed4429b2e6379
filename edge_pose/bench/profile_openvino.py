"""Where an OpenVINO IR's time goes on one device: per-layer times from the plugin's performance counters.

Compiled with PERF_COUNT=True, each inference request reports every executed layer (after the plugin's fusions)
with its type, the kernel that ran it (exec_type, e.g. `jit_avx512_I8`, `ref_f32`) and its real time. Quantise /
dequantise work (FakeQuantize, Convert), layout reorders and concatenations that requantise (a Concatenation
executed in another precision than its neighbours, or next to a FakeQuantize) are counted apart, because they are
what an int8 model pays on top of its float one.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np

QUANTIZE_TYPES = ("FakeQuantize", "Convert", "Quantize", "Dequantize")


def _precision(exec_type: str) -> str:
    """'jit_avx512_I8' -> 'i8'; 'ref_f32' -> 'f32'; '' when the kernel name carries none."""
    tail = exec_type.rsplit("_", 1)[-1].lower() if "_" in exec_type else ""
    return tail if tail in ("i8", "u8", "f32", "bf16", "f16", "i32") else ""


def profile_openvino(xml: str, top: int = 15, threads: int | None = 2, runs: int = 20,
                     config: dict[str, Any] | None = None, device: str = "CPU") -> dict[str, Any]:
    import openvino as ov

    core = ov.Core()
    settings: dict[str, Any] = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", **(config or {})}
    if threads and device == "CPU":
        settings["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = core.compile_model(core.read_model(xml), device, settings)
    request = compiled.create_infer_request()
    port = compiled.inputs[0]
    x = np.random.default_rng(0).normal(size=tuple(port.get_shape())).astype(np.float32)
    for _ in range(3):
        request.infer({0: x})
    per_layer: dict[str, dict[str, Any]] = {}
    samples: dict[str, list[float]] = defaultdict(list)
    totals = []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer({0: x})
        totals.append((time.perf_counter() - start) * 1e3)
        for info in request.get_profiling_info():
            if str(info.status).endswith("NOT_RUN"):
                continue
            samples[info.node_name].append(info.real_time.total_seconds() * 1e3)
            per_layer.setdefault(info.node_name, {"name": info.node_name, "type": info.node_type,
                                                  "exec_type": info.exec_type})
    layers = []
    for name, row in per_layer.items():
        layers.append({**row, "ms": float(np.median(samples[name])), "precision": _precision(row["exec_type"])})
    layers.sort(key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in layers)
    by_type: dict[str, dict[str, float]] = defaultdict(lambda: {"count": 0, "ms": 0.0})
    for r in layers:
        by_type[r["type"]]["count"] += 1
        by_type[r["type"]]["ms"] += r["ms"]
    quant = [r for r in layers if r["type"] in QUANTIZE_TYPES]
    # the CPU plugin fuses most FakeQuantize into the layer before it and names the result ".../fq_..."
    fused_fq = [r for r in layers if r["type"] not in QUANTIZE_TYPES and "fq_" in r["name"]]
    reorders = [r for r in layers if r["type"] == "Reorder"]
    concats = [r for r in layers if r["type"] == "Concatenation"]
    main_precisions = {r["precision"] for r in layers if r["type"] in ("Convolution", "GroupConvolution")}
    requant_concats = [r for r in concats if r["precision"] and r["precision"] not in main_precisions]

    def prop(key):
        try:
            value = compiled.get_property(key)
            return value.get_type_name() if hasattr(value, "get_type_name") else value
        except Exception:  # noqa: BLE001 - not every device reports every property
            return None

    return {
        "format": "openvino", "model": str(xml), "runtime": f"openvino {ov.get_version().split('-')[0]}",
        "device": device, "threads": prop("INFERENCE_NUM_THREADS"),
        "inference_precision": prop("INFERENCE_PRECISION_HINT"),
        "execution_devices": prop("EXECUTION_DEVICES"),
        "latency": {"p50_ms": float(np.median(totals))},
        "layers_executed": len(layers), "sum_ms": total,
        "by_type": [{"op": t, "count": int(v["count"]), "ms": v["ms"], "share": v["ms"] / total if total else 0.0}
                    for t, v in sorted(by_type.items(), key=lambda kv: -kv[1]["ms"])],
        "quantization": {"quantize_convert_layers": len(quant), "quantize_convert_ms": sum(r["ms"] for r in quant),
                         "layers_with_fused_fakequantize": len(fused_fq),
                         "layers_with_fused_fakequantize_ms": sum(r["ms"] for r in fused_fq),
                         "reorders": len(reorders), "reorder_ms": sum(r["ms"] for r in reorders),
                         "concatenations": len(concats), "concatenation_ms": sum(r["ms"] for r in concats),
                         "requantising_concatenations": len(requant_concats),
                         "requantising_concatenation_ms": sum(r["ms"] for r in requant_concats)},
        "top": layers[:top],
    }

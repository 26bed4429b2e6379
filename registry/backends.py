"""Backends: the adapter that runs a format, the accelerators it knows (in its own spelling), and whether it can
read back the execution precision it compiled with."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class BackendEntry:
    name: str
    adapter: str  # "module:Class" behind edge_pose.backends.base.Backend
    formats: tuple[str, ...]
    accelerators: tuple[str, ...]  # the spellings it accepts (a pattern for device strings, see `accept`)
    accelerator_pattern: str  # full-match regular expression for an accelerator string
    case: str  # "lower" or "upper": how the backend spells accelerators
    default_accelerator: str
    install: str  # what to pip install for it
    dists: tuple[str, ...]  # the distributions that provide it, for version look-ups (first found wins)


BACKENDS = {b.name: b for b in (
    BackendEntry("litert", "edge_pose.backends.litert:LiteRTBackend", ("tflite",), ("cpu", "gpu", "delegate"),
                 r"cpu|gpu|delegate", "lower", "cpu", "ai-edge-litert",
                 ("ai-edge-litert", "tflite-runtime", "tensorflow-cpu", "tensorflow")),
    BackendEntry("openvino", "edge_pose.backends.openvino:OpenVINOBackend", ("openvino", "onnx"),
                 ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI"),
                 r"CPU|GPU(\.\d+)?|NPU|AUTO(:[A-Z0-9.,]+)?|HETERO:[A-Z0-9.,]+|MULTI:[A-Z0-9.,]+", "upper", "CPU",
                 "openvino", ("openvino",)),
    BackendEntry("onnxruntime", "edge_pose.backends.onnxruntime:OnnxRuntimeBackend", ("onnx",),
                 ("tensorrt", "cuda", "cpu"), r"tensorrt|cuda|cpu", "lower", "cpu",
                 "onnxruntime (onnxruntime-gpu or the JetPack wheel on Jetson)", ("onnxruntime", "onnxruntime-gpu")),
)}


def normalise_accelerator(backend: str, accelerator: str) -> str | None:
    """`accelerator` in the backend's own spelling, or None when the backend has no such accelerator."""
    entry = BACKENDS[backend]
    acc = accelerator.lower() if entry.case == "lower" else accelerator.upper()
    return acc if re.fullmatch(entry.accelerator_pattern, acc) else None


def backends_for(fmt: str) -> list[str]:
    return [b.name for b in BACKENDS.values() if fmt in b.formats]

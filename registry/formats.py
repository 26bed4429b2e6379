"""Target formats: the files a bundle of that format holds, the precisions it can be built at, the exporter that
builds it, and the backend (with its default accelerator) that runs it by default. A (format, precision) pair is a
Target; its execution precision comes from the precision entry."""
from __future__ import annotations

from dataclasses import dataclass

from registry.precisions import PRECISIONS, PrecisionEntry


@dataclass(frozen=True)
class FormatEntry:
    name: str
    files: tuple[str, ...]  # what a bundle of this format holds besides edge_pose.json (blobs are optional extras)
    model_file: str
    precisions: tuple[str, ...]  # what the converters can build (empty: packaged only, never built here)
    exporter: str | None  # "module:function" of the converter
    backend: str  # the backend that runs it by default (the guard runs bundles this way)
    accelerator: str  # ... on this accelerator
    suffixes: tuple[str, ...]  # model file suffixes of this format
    execution: tuple[tuple[str, str], ...] = ()  # (precision, execution) where this format differs from the default


FORMATS = {f.name: f for f in (
    FormatEntry("tflite", ("model.tflite",), "model.tflite", ("fp32", "fp16", "dynamic", "int8", "int16x8"),
                "converters.export.tflite:export_tflite_target", "litert", "cpu", (".tflite",)),
    FormatEntry("openvino", ("model.xml", "model.bin"), "model.xml", ("fp32", "fp16", "bf16", "int8"),
                "converters.export.openvino:export_openvino", "openvino", "CPU", (".xml",)),
    # ONNX fp16 is a float16 graph (weights and arithmetic), unlike the fp16-weights formats above
    FormatEntry("onnx", ("model.onnx",), "model.onnx", ("fp32", "fp16", "int8"), "converters.export.onnx:export_onnx",
                "onnxruntime", "cpu", (".onnx",), execution=(("fp16", "f16"),)),
)}


@dataclass(frozen=True)
class Target:
    format: str
    precision: str

    @property
    def entry(self) -> FormatEntry:
        return FORMATS[self.format]

    @property
    def precision_entry(self) -> PrecisionEntry:
        return PRECISIONS[self.precision]

    @property
    def execution(self) -> str:
        return execution_of(self.format, self.precision)

    @property
    def calibrated(self) -> bool:
        return PRECISIONS[self.precision].calibrated

    def label(self) -> str:
        return f"{self.format}/{self.precision}"


def execution_of(fmt: str, precision: str) -> str:
    """The execution precision a bundle of this format and precision is validated at."""
    entry = FORMATS.get(fmt)
    override = dict(entry.execution) if entry else {}
    return override.get(precision) or PRECISIONS[precision].execution


def target(fmt: str, precision: str) -> Target | None:
    """The buildable target, or None when the format cannot be built at that precision."""
    entry = FORMATS.get(fmt)
    return Target(fmt, precision) if entry and precision in entry.precisions else None


def targets() -> list[Target]:
    return [Target(f.name, p) for f in FORMATS.values() for p in f.precisions]

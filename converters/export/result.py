"""What an exporter hands back to the pipeline: the files it wrote and the facts the manifest needs about them.

The exporter is the only party that knows how the converter changed the model's I/O (onnx2tf turns NCHW into
NHWC, int8 I/O adds quantisation params), so it records those facts here instead of the pipeline guessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_pose.bundle import Quantization


@dataclass
class ExportResult:
    format: str  # "tflite" | "openvino"
    precision: str  # fp32 | fp16 | dynamic | int8 | int16x8
    files: dict[str, Path]  # bundle file name -> path of the written file (e.g. {"model.tflite": ...})
    model_file: str  # the file the runtime loads, a key of `files`
    input_name: str
    output_name: str
    input_layout: str = "NHWC"  # of the exported model's input tensor (may differ from the source's)
    output_layout: str = "NHWC"
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    input_quantization: Quantization | None = None  # set when input_dtype is an integer type
    output_quantization: Quantization | None = None
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    ops: list[str] = field(default_factory=list)  # operator names in the exported graph
    blobs: dict[str, str] = field(default_factory=dict)  # OpenVINO device -> blob file name (a key of `files`)
    tools: dict[str, str] = field(default_factory=dict)  # tool name -> version
    seconds: float = 0.0  # conversion wall time
    notes: list[str] = field(default_factory=list)  # what was done that a reader should know (mitigations, etc.)
    extra: dict[str, Any] = field(default_factory=dict)

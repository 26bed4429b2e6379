"""Ready model files, packaged without conversion: a .tflite, or an OpenVINO .xml with its .bin beside it.

What the file tells is read from it: the input's name, shape, layout (when the shape or the IR says it), dtype and
quantisation, the heatmap output, and the precision it was built at (from its tensors, not its name). What it cannot
tell comes from the same flags as every other source (converters/sources/facts.py), and anything missing is one
line listing every flag needed. Nothing here loads more than the file's graph: no inference, no TensorFlow.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_pose.bundle import InputSpec, KeypointSpec, OutputSpec, Quantization

from converters.errors import SourceError
from converters.sources import facts as F
from converters.sources.base import sha256_path

READY = {".tflite": "tflite", ".xml": "openvino"}


@dataclass
class ReadyModel:
    """A ready model file with every fact its manifest needs."""

    path: Path
    format: str  # tflite | openvino
    files: dict[str, Path]  # bundle file name -> the user's file, copied as it is
    model_name: str
    input: InputSpec
    output: OutputSpec
    keypoints: KeypointSpec
    precision: str  # what the file was built at: fp32, fp16, dynamic, int8, int16x8
    sha256: str
    notes: list[str] = field(default_factory=list)


def _plain(name: str) -> str:
    return name.split(":")[0]


def _named(facts: F.Facts, names: dict[str, list[str]]) -> F.Facts:
    """The user's --output resolved to the tensor's own name (TF writes 'x:0'; Facts keeps the plain 'x')."""
    if facts.output is None:
        return facts
    for name, aliases in names.items():
        if facts.output in aliases or facts.output in {_plain(a) for a in aliases}:
            return dataclasses.replace(facts, output=name)
    return facts


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _finish(path: Path, fmt: str, files: dict[str, Path], in_name: str, in_shape: list, out_names: dict,
            out_shapes: dict, facts: F.Facts, precision: str, notes: list[str], reshape=None) -> ReadyModel:
    """The shared second half: input spec, heatmap output, missing facts in one line."""
    where = str(path)
    inp, missing = F.input_spec(where, in_name, in_shape, facts)
    facts = _named(facts, out_names)
    out_name, missing_out = F.choose_output(where, out_shapes, facts)
    missing += missing_out + (["keypoints"] if facts.keypoints is None else [])
    if missing:
        raise F.missing_error(where, missing, out_shapes)
    shape = out_shapes[out_name]
    if (not shape or None in shape) and reshape is not None:
        shape = reshape(inp, out_name)
    out = F.output_spec(where, out_name, shape, facts.keypoints, inp.layout)
    return ReadyModel(path, fmt, files, path.parent.name if path.stem == "model" else path.stem, inp, out,
                      facts.keypoints, precision, sha256_path(path), notes)


# -- TFLite --------------------------------------------------------------------------------------------------------

def _tflite_precision(it) -> str:
    """From the tensors the ops compute: integer activations -> int8 (int16 -> int16x8); float16 weights behind
    DEQUANTIZE -> fp16; int8 weights with float activations -> dynamic; else fp32."""
    tensors = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    ops = it._get_ops_details()  # the only place LiteRT lists the graph; no TensorFlow needed
    computed = {tensors[i] for op in ops if op["op_name"] != "DEQUANTIZE" for i in op["outputs"] if i in tensors}
    if "int16" in computed:
        return "int16x8"
    if computed & {"int8", "uint8"}:
        return "int8"
    if any(op["op_name"] == "DEQUANTIZE" and tensors.get(int(op["inputs"][0])) == "float16" for op in ops):
        return "fp16"
    produced = {i for op in ops for i in op["outputs"]} | {d["index"] for d in it.get_input_details()}
    weights = {tensors[i] for op in ops for i in op["inputs"] if i in tensors and i not in produced}
    return "dynamic" if weights & {"int8", "uint8"} else "fp32"


def _quantization(detail) -> Quantization | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"]).name
    return Quantization(float(scale), int(zero)) if dtype in ("int8", "uint8", "int16") and scale else None


def read_tflite(path: Path, facts: F.Facts) -> ReadyModel:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edge_pose.backends.litert import REDUCED_PRECISION_KEY

    try:  # without the default delegate: the graph as written, not XNNPACK's partitions
        it = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ValueError, RuntimeError) as exc:
        raise SourceError(f"{path}: not a readable TFLite model ({_one_line(exc)})") from None
    inputs = it.get_input_details()
    if len(inputs) != 1:
        raise SourceError(f"{path}: {len(inputs)} inputs; a pose model takes exactly one image input")
    d = inputs[0]
    sig = [int(v) for v in d.get("shape_signature", d["shape"])]
    if len(sig) == 4 and any(v < 0 for v in sig[1:]):
        raise SourceError(f"{path}: input {d['name']!r} has dynamic dimensions {sig}; packaging does not reshape a "
                          f"model: convert it from its source with --input-size")
    shape = [int(v) for v in d["shape"]]
    if len(shape) == 4 and shape[0] != 1:
        raise SourceError(f"{path}: input batch is fixed at {shape[0]}; edge-pose needs batch 1")
    outs = {o["name"]: [int(v) for v in o["shape"]] for o in it.get_output_details() if len(o["shape"]) == 4}
    precision = _tflite_precision(it)
    notes = [f"packaged as given ({path.name}, {precision}), not converted"]
    if REDUCED_PRECISION_KEY in path.read_bytes():
        notes.append("the file allows XNNPACK reduced precision: ARM CPUs with fp16 arithmetic would compute it in "
                     "f16, which the runtime skips there unless --allow-precision f16")
    ready = _finish(path, "tflite", {"model.tflite": path}, d["name"], shape, {n: [n] for n in outs}, outs, facts,
                    precision, notes)
    out = next(o for o in it.get_output_details() if o["name"] == ready.output.name)
    ready.input.dtype, ready.input.quantization = np.dtype(d["dtype"]).name, _quantization(d)
    ready.output.dtype, ready.output.quantization = np.dtype(out["dtype"]).name, _quantization(out)
    return ready


# -- OpenVINO ------------------------------------------------------------------------------------------------------

def _openvino_precision(model) -> str:
    """FakeQuantize or integer weights -> int8; float16 weights (decompressed by Convert) -> fp16; else fp32."""
    types = {op.get_type_name() for op in model.get_ordered_ops()}
    consts = {op.get_element_type().get_type_name() for op in model.get_ordered_ops()
              if op.get_type_name() == "Constant"}
    if "FakeQuantize" in types or consts & {"i8", "u8", "i4", "u4"}:
        return "int8"
    return "fp16" if "f16" in consts else "fp32"


def file_precision(path: Path, kind: str) -> str:
    """The precision a ready .tflite or OpenVINO .xml computes in, read from its tensors (see the two readers)."""
    if kind == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        return _tflite_precision(Interpreter(model_path=str(path)))
    import openvino as ov

    return _openvino_precision(ov.Core().read_model(str(path)))


def _dims(partial) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in partial]


def _ov_layout(port) -> str | None:
    text = str(port.get_node().get_layout())
    return {"[N,H,W,C]": "NHWC", "[N,C,H,W]": "NCHW"}.get(text.replace(" ", ""))


def read_openvino(path: Path, facts: F.Facts) -> ReadyModel:
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise SourceError(f"{path}: its weights file {weights.name} is not beside it (an OpenVINO IR is the .xml "
                          f"and its .bin)")
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path), str(weights))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises bare exceptions with C++ traces
        raise SourceError(f"{path}: OpenVINO cannot read it ({_one_line(exc)})") from None
    if len(model.inputs) != 1:
        raise SourceError(f"{path}: {len(model.inputs)} inputs; a pose model takes exactly one image input")
    port = model.inputs[0]
    for what, p in (("input", port), *(("output", o) for o in model.outputs)):
        dtype = np.dtype(p.get_element_type().to_dtype()).name
        if dtype not in ("float32", "float16") or (what == "input" and dtype != "float32"):
            raise SourceError(f"{path}: {what} {p.get_any_name()!r} is {dtype}; packaging takes a float32 image "
                              f"input and float heatmaps")
    if port.get_partial_shape().rank.is_dynamic:
        raise SourceError(f"{path}: input {port.get_any_name()!r} has no known rank; a pose model takes 4-D images")
    shape = _dims(port.get_partial_shape())
    if len(shape) == 4 and shape[0] not in (None, 1):
        raise SourceError(f"{path}: input batch is fixed at {shape[0]}; edge-pose needs batch 1")
    if facts.layout is None and _ov_layout(port):
        facts = dataclasses.replace(facts, layout=_ov_layout(port))
    outs = {o.get_any_name(): _dims(o.get_partial_shape()) for o in model.outputs
            if o.get_partial_shape().rank.is_static and o.get_partial_shape().rank.get_length() == 4}
    names = {o.get_any_name(): sorted(o.get_names()) for o in model.outputs}

    def static_output(inp: InputSpec, name: str) -> list[int]:
        h, w = inp.size
        fixed = model.clone()
        try:
            fixed.reshape([1, 3, h, w] if inp.layout == "NCHW" else [1, h, w, 3])
        except Exception as exc:  # noqa: BLE001
            raise SourceError(f"{path}: cannot fix the input to {inp.size} ({_one_line(exc)})") from None
        out = next(o for o in fixed.outputs if name in o.get_names())
        return _dims(out.get_partial_shape())

    in_shape = [1] + shape[1:] if len(shape) == 4 else shape
    precision = _openvino_precision(model)
    ready = _finish(path, "openvino", {"model.xml": path, "model.bin": weights}, port.get_any_name(), in_shape,
                    names, outs, facts, precision, [f"packaged as given ({path.name} + {weights.name}, {precision}), "
                                                    "not converted"], reshape=static_output)
    out = next(o for o in model.outputs if ready.output.name in o.get_names())
    ready.output.dtype = np.dtype(out.get_element_type().to_dtype()).name
    return ready


def read_ready(path, input_size=None, layout=None, color=None, mean=None, std=None, keypoints=None,
               output=None) -> ReadyModel:
    """The facts of a ready .tflite or .xml, with the user's statements for what it cannot tell (SourceError:
    one line)."""
    path = Path(path)
    facts = F.Facts.parse(input_size, layout, color, mean, std, keypoints, output)
    kind = READY.get(path.suffix.lower())
    if kind is None:
        raise SourceError(f"{path}: a ready model to package is a .tflite or an OpenVINO .xml")
    if not path.is_file():
        raise SourceError(f"{path}: no such model file")
    return read_tflite(path, facts) if kind == "tflite" else read_openvino(path, facts)

"""Source -> an OpenVINO model with static batch-1 shapes, read from Keras, SavedModel, ONNX or a frozen graph.

Never from a .tflite: OpenVINO's TFLite frontend drops a ReLU fused into TRANSPOSE_CONV. Measured here: a Keras 3
model converts directly (`ov.convert_model(keras_model)`) with the same output as through a SavedModel (4.7e-7
relative), so the direct path is used (no SavedModel written); the raw opset-8 ONNX reads correctly as it is (2.8e-6
relative to onnxruntime). Shapes are fixed before saving because the NPU compiles static shapes only.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from converters.errors import ConversionError

KINDS = ("keras", "savedmodel", "onnx", "frozen_graph")


def _tf_tensor(name: str) -> str:
    """TF1 graphs name tensors `op:0`; users and manifests name the op."""
    return name if ":" in name else f"{name}:0"


def _plain(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _path(source: Any, attr: str) -> Path:
    value = getattr(source, attr, None)
    value = value() if callable(value) else value
    return Path(value if value is not None else source.path)


def _convert(source: Any):
    import openvino as ov

    kind = source.kind
    if kind == "keras":
        model = getattr(source, "keras_model", None)
        if model is None or len(model.outputs) > 1:  # the SavedModel signature selects the heatmap output
            return ov.convert_model(str(_path(source, "saved_model_dir")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns about the input structure OpenVINO passes; harmless
            return ov.convert_model(model, example_input=_example(source))
    if kind == "savedmodel":
        return ov.convert_model(str(_path(source, "saved_model_dir")))
    if kind == "onnx":
        return ov.convert_model(str(_path(source, "onnx_path")))
    if kind == "frozen_graph":
        return ov.convert_model(str(_path(source, "pb_path")),
                                input=[(_tf_tensor(source.input.name), list(static_input_shape(source)))],
                                output=[_tf_tensor(source.output.name)])
    raise ConversionError(f"{getattr(source, 'path', source)}: source kind {kind!r} cannot be exported to OpenVINO "
                          f"(supported: {', '.join(KINDS)}; never from a .tflite)")


def _example(source: Any):
    import numpy as np

    return np.zeros(static_input_shape(source), dtype=np.float32)


def static_input_shape(source: Any) -> tuple[int, int, int, int]:
    h, w = source.input.height, source.input.width
    return (1, 3, h, w) if source.input.layout == "NCHW" else (1, h, w, 3)


def expected_output_shape(source: Any) -> tuple[int, int, int, int]:
    out = source.output
    k = len(source.keypoints.names)
    hh, hw = out.heatmap_height, out.heatmap_width
    return (1, k, hh, hw) if out.layout == "NCHW" else (1, hh, hw, k)


def one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Check ", "Traceback", "File ", "["))]
    return (useful or lines or [type(exc).__name__])[-1][:300]


_CACHE: list[tuple[Any, Any]] = []  # (source, model): the last few sources read, newest last
_CACHE_SIZE = 2  # the guard alternates between a source and its rewritten graph


def read_static_model(source: Any):
    """The source as an `ov.Model` with batch 1 and fixed (H, W), its tensors named as the source names them.

    Each call returns a fresh copy (callers may change it), cloned from the model read for the same source object
    the last time: the guard quantises one source up to ~20 times, and reading a Keras model costs up to a minute.
    """
    for cached, model in _CACHE:
        if cached is source:
            return model.clone()
    model = _read(source)
    _CACHE.append((source, model))
    del _CACHE[:-_CACHE_SIZE]
    return model.clone()


def _read(source: Any):
    where = getattr(source, "path", None) or getattr(source, "model_name", "model")
    try:
        model = _convert(source)
    except ConversionError:
        raise
    except Exception as exc:  # OpenVINO frontends raise bare Exceptions/RuntimeErrors with multi-line C++ traces
        raise ConversionError(f"{where}: OpenVINO cannot read this {source.kind} model: {one_line(exc)}") from None
    if len(model.inputs) != 1:
        raise ConversionError(f"{where}: OpenVINO sees {len(model.inputs)} inputs; a pose model has one image input")
    model = _pick_output(model, source, where)
    shape = static_input_shape(source)
    try:
        model.reshape({model.inputs[0]: shape})
    except Exception as exc:
        raise ConversionError(f"{where}: cannot fix the input shape to {list(shape)}: {one_line(exc)}") from None
    got = tuple(model.outputs[0].get_partial_shape().to_shape())
    want = expected_output_shape(source)
    if got != want:
        raise ConversionError(f"{where}: OpenVINO output shape {list(got)} is not the expected {list(want)} "
                              f"({source.output.layout}, {len(source.keypoints.names)} keypoints)")
    _name(model.inputs[0], source.input.name)
    _name(model.outputs[0], source.output.name)
    _set_layout(model, source.input.layout)
    _stable_names(model)
    return model


_GENERATED = re.compile(r"^[A-Za-z]+_\d+$")  # OpenVINO's per-process counter names, e.g. Convolution_48454


def _stable_names(model) -> None:
    """Rename counter-named ops by their topological index, so NNCF ignored-scope names read from one conversion
    match another conversion of the same source (TF and Keras frontends name ops from a global counter)."""
    taken = {op.get_friendly_name() for op in model.get_ordered_ops()}
    for i, op in enumerate(model.get_ordered_ops()):
        name, kind = op.get_friendly_name(), op.get_type_name()
        if kind in ("Parameter", "Result", "Constant") or not _GENERATED.match(name):
            continue
        new = f"{kind}#{i}"
        if new not in taken:
            op.set_friendly_name(new)
            taken.add(new)


def _pick_output(model, source: Any, where):
    """Keep only the heatmap output when a graph has several (e.g. every CPM stage)."""
    if len(model.outputs) == 1:
        return model
    import openvino as ov

    want = {source.output.name, _tf_tensor(source.output.name)}
    keep = [o for o in model.outputs if want & set(o.get_names())]
    if not keep:
        names = ", ".join(sorted(n for o in model.outputs for n in o.get_names()))
        raise ConversionError(f"{where}: output {source.output.name!r} not among the model's outputs ({names})")
    results = [r for r in model.get_results() if want & set(r.input_value(0).get_names())]
    return ov.Model(results[:1], model.get_parameters(), model.get_friendly_name())


def _name(port, name: str) -> None:
    """Make the manifest's tensor name (e.g. `image`, not TF's `image:0`) a name of the IR tensor."""
    if name and _plain(name) not in port.get_names():
        port.get_tensor().add_names({_plain(name)})


def _set_layout(model, layout: str) -> None:
    """Record the input layout in the IR so device plugins and PrePostProcessor need not guess it."""
    import openvino as ov

    model.inputs[0].get_node().set_layout(ov.Layout(layout))


def tensor_name(port, preferred: str) -> str:
    """The name the runtime should look the tensor up by: the manifest's name when the IR has it."""
    names = port.get_names()
    for cand in (preferred, _plain(preferred)):
        if cand in names:
            return cand
    return port.get_any_name()

"""INT8 post-training quantisation of an OpenVINO model with NNCF, and the float scopes the fidelity guard can try.

NNCF calibrated on random arrays is poor; on real image crops (in model-input form) it is fine, so calibration
inputs are required. `float_scopes` names the usual mitigations (first conv, last conv, sigmoid gates) as NNCF
ignored scopes built from the model's own node names, so the guard need not know OpenVINO node naming.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from converters.errors import ConversionError

PRESETS = ("performance", "mixed")
# Activation range estimators: NNCF's default averages per-sample extremes (robust to outliers, made for
# classifiers); "minmax" takes the extremes over the whole set, so no heatmap peak or rare large feature is clipped.
RANGES = ("default", "minmax")
TARGET_DEVICES = ("CPU", "GPU", "NPU")
_CONV_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData")


def calibration_items(calib_inputs: Any, input_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Calibration crops (an (N, ...) array or a sequence of arrays) as batch-1 float32 arrays of the input shape.

    Shapes are checked, never reshaped: an NHWC crop reshaped into an NCHW input would calibrate on garbage.
    """
    if calib_inputs is None:
        raise ConversionError("INT8 needs calibration inputs: real crops in model-input form (e.g. --calib DATA)")
    input_shape = tuple(input_shape)
    items = []
    for x in calib_inputs:
        x = np.asarray(x, dtype=np.float32)
        x = x[None] if x.shape == input_shape[1:] else x
        if x.shape != input_shape:
            raise ConversionError(f"calibration input shape {list(x.shape)} is not the model input {list(input_shape)}")
        items.append(np.ascontiguousarray(x))
    if not items:
        raise ConversionError("INT8 needs calibration inputs, got an empty set")
    return items


def resolve_scope(spec: Any, model, num_keypoints: int | None = None) -> tuple[Any, str]:
    """An ignored-scope request -> (`nncf.IgnoredScope` or None, a short description for notes).

    `spec` is None; a mitigation name or a list of them (see float_scopes),
    resolved on THIS model (OpenVINO's node names for TF/Keras sources are generated per conversion, so names taken
    from another conversion do not match); a mapping with names/types/patterns; or an `nncf.IgnoredScope`.
    """
    import nncf

    if spec is None or isinstance(spec, nncf.IgnoredScope):
        return spec, describe_scope(spec)
    if isinstance(spec, str) or (isinstance(spec, (list, tuple)) and all(isinstance(x, str) for x in spec)):
        wanted = [spec] if isinstance(spec, str) else list(spec)
        available = float_scopes(model, num_keypoints)
        missing = [w for w in wanted if w not in available]
        if missing:
            raise ConversionError(f"float scope {', '.join(missing)} does not apply to this model (available: "
                                  f"{', '.join(available) or 'none'})")
        names = sorted({n for w in wanted for n in available[w]["names"]})
        return nncf.IgnoredScope(names=names), f"{'+'.join(wanted)} ({len(names)} nodes)"
    if not isinstance(spec, Mapping):
        raise ConversionError(f"ignored scope {spec!r} is not a mitigation name or a mapping of names/types/patterns")
    unknown = set(spec) - {"names", "types", "patterns"}
    if unknown:
        raise ConversionError(f"ignored scope keys {sorted(unknown)} unknown (use names, types, patterns)")
    parts = {k: list(spec.get(k) or ()) for k in ("names", "types", "patterns")}
    scope = nncf.IgnoredScope(**parts) if any(parts.values()) else None
    return scope, describe_scope(scope)


def describe_scope(scope) -> str:
    if scope is None:
        return "none"
    bits = [f"{k}={v}" for k, v in (("names", scope.names), ("types", scope.types), ("patterns", scope.patterns))
            if v]
    return ", ".join(bits)


def quantize_int8(model, calib_inputs: Any, *, preset: str | None = None, scope=None,
                  target_device: str | None = None, ranges: str | None = None):
    """FP32 `ov.Model` -> INT8 `ov.Model` (NNCF PTQ, symmetric weights per channel; NNCF shows its own progress).

    `scope` is an `nncf.IgnoredScope` (see resolve_scope) or None; `ranges` one of RANGES.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    preset = (preset or "performance").lower()
    if preset not in PRESETS:
        raise ConversionError(f"NNCF preset {preset!r} unknown (use {' or '.join(PRESETS)})")
    ranges = (ranges or "default").lower()
    if ranges not in RANGES:
        raise ConversionError(f"activation ranges {ranges!r} unknown (use {' or '.join(RANGES)})")
    advanced = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX) if ranges == "minmax" else None
    shape = tuple(model.inputs[0].get_partial_shape().to_shape())
    items = calibration_items(calib_inputs, shape)
    device = nncf.TargetDevice[target_device] if target_device in TARGET_DEVICES else nncf.TargetDevice.ANY
    try:
        return nncf.quantize(model, nncf.Dataset(items), preset=nncf.QuantizationPreset(preset),
                             target_device=device, subset_size=len(items), ignored_scope=scope,
                             advanced_parameters=advanced)
    except nncf.ValidationError as exc:  # e.g. an ignored-scope name that is not in the model
        raise ConversionError(f"NNCF ignored scope ({describe_scope(scope)}): {str(exc).splitlines()[0]}") from None


def _ops(model, types: Iterable[str]) -> list:
    types = set(types)
    return [op for op in model.get_ordered_ops() if op.get_type_name() in types]


def _consumers(node) -> list:
    return [t.get_node() for out in node.outputs() for t in out.get_target_inputs()]


def _forward(start, passing: tuple[str, ...] | None, stop: tuple[str, ...]) -> tuple[list, list]:
    """Nodes reached from `start` through `passing` ops (None: any op): (passed nodes, first `stop` nodes met)."""
    passed, stopped, todo, seen = [], [], _consumers(start), set()
    while todo:
        node = todo.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if node.get_type_name() in stop:
            stopped.append(node)
        elif passing is None or node.get_type_name() in passing:
            passed.append(node)
            todo.extend(_consumers(node))
    return passed, stopped


def _channels(node) -> int | None:
    dim = node.get_output_partial_shape(0)[1]  # OpenVINO convolutions are NCHW inside, whatever the source layout
    return dim.get_length() if dim.is_static else None


def heatmap_path(model, num_keypoints: int) -> list[str]:
    """Convs that produce K heatmaps, the resizes/concats they feed and the convs reading them.

    Multi-stage models (CPM) feed every stage's heatmaps into the next stage through a Concat (or, once the graph's
    concat-fed convs are split, straight into a conv); quantising that path clips heatmap peaks (NNCF's range is the
    mean of per-sample maxima) and errors compound stage by stage.
    """
    elementwise = ("Add", "Relu", "Clamp", "Transpose", "Convert", "Sigmoid", "Interpolate")
    names: list[str] = []
    for head in (c for c in _ops(model, _CONV_TYPES) if _channels(c) == num_keypoints):
        passed, stops = _forward(head, elementwise, ("Concat", "Result") + _CONV_TYPES)
        if not any(n.get_type_name() in ("Concat", "Result") for n in stops) and len(stops) != 1:
            continue  # a K-channel conv inside the body (a channel count that happens to equal K), not a head
        names.append(head.get_friendly_name())
        names += [n.get_friendly_name() for n in passed if n.get_type_name() == "Interpolate"]
        for stop in stops:
            if stop.get_type_name() == "Concat":
                names.append(stop.get_friendly_name())
                _, readers = _forward(stop, elementwise, _CONV_TYPES)
                names += [r.get_friendly_name() for r in readers]
            elif stop.get_type_name() in _CONV_TYPES:
                names.append(stop.get_friendly_name())
    return sorted(set(names))


def refinement_stages(model, num_keypoints: int) -> list[str]:
    """Every op that depends on the first of several heatmap heads: the refinement stages of a multi-stage model
    (empty for a single-stage one). The backbone and the first stage stay int8."""
    heads = [c for c in _ops(model, _CONV_TYPES) if _channels(c) == num_keypoints]
    if len(heads) < 2:
        return []
    passed, _ = _forward(heads[0], None, ("Result",))
    names = [n.get_friendly_name() for n in passed if n.get_type_name() not in ("Constant", "Parameter")]
    return sorted(names)


def depthwise_convs(model) -> list[str]:
    """Depthwise convolutions (a GroupConvolution with one input channel per group): MobileNet-style blocks' known
    int8 weak spot - a 3x3 kernel per channel, with BatchNorm folded in, leaves few levels for small channels."""
    names = []
    for op in _ops(model, ("GroupConvolution",)):
        weights = op.input_value(1).get_partial_shape()  # [groups, out/group, in/group, kh, kw]
        if weights.rank.is_static and weights[2].is_static and weights[2].get_length() == 1:
            names.append(op.get_friendly_name())
    return names


def float_scopes(model, num_keypoints: int | None = None) -> dict[str, dict[str, list[str]]]:
    """Mitigations this model allows, as ignored-scope mappings: first_conv, last_conv, sigmoid_gates, heatmap_path,
    refinement_stages, depthwise_convs.

    Sigmoid gates are kept in float by ignoring the Multiply each Sigmoid feeds (NNCF quantises the multiply's
    inputs, not the sigmoid itself). Only scopes that exist in this model are returned. `num_keypoints` defaults to
    the output's channel count read as NCHW or NHWC (the smaller of dims 1 and 3).
    """
    scopes: dict[str, dict[str, list[str]]] = {}
    convs = _ops(model, _CONV_TYPES)
    if convs:
        scopes["first_conv"] = {"names": [convs[0].get_friendly_name()]}
        scopes["last_conv"] = {"names": [convs[-1].get_friendly_name()]}
    gates = []
    for sig in _ops(model, ("Sigmoid",)):
        gates += [n.get_friendly_name() for n in _consumers(sig) if n.get_type_name() == "Multiply"]
    if gates:
        scopes["sigmoid_gates"] = {"names": sorted(set(gates))}
    if num_keypoints is None:
        shape = model.outputs[0].get_partial_shape().to_shape()
        num_keypoints = min(shape[1], shape[3])
    path = heatmap_path(model, num_keypoints)
    if path and path != scopes.get("last_conv", {}).get("names"):
        scopes["heatmap_path"] = {"names": path}
    stages = refinement_stages(model, num_keypoints)
    if stages:
        scopes["refinement_stages"] = {"names": stages}
    depthwise = depthwise_convs(model)
    if depthwise:
        scopes["depthwise_convs"] = {"names": depthwise}
    return scopes

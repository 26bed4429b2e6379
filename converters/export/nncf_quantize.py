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


def to_ignored_scope(spec: Any):
    """None, an `nncf.IgnoredScope`, or a mapping with names/types/patterns -> `nncf.IgnoredScope` (or None)."""
    import nncf

    if spec is None or isinstance(spec, nncf.IgnoredScope):
        return spec
    if not isinstance(spec, Mapping):
        raise ConversionError(f"ignored scope {spec!r} is not a mapping of names/types/patterns")
    unknown = set(spec) - {"names", "types", "patterns"}
    if unknown:
        raise ConversionError(f"ignored scope keys {sorted(unknown)} unknown (use names, types, patterns)")
    parts = {k: list(spec.get(k) or ()) for k in ("names", "types", "patterns")}
    return nncf.IgnoredScope(**parts) if any(parts.values()) else None


def describe_scope(scope) -> str:
    if scope is None:
        return "none"
    bits = [f"{k}={v}" for k, v in (("names", scope.names), ("types", scope.types), ("patterns", scope.patterns))
            if v]
    return ", ".join(bits)


def quantize_int8(model, calib_inputs: Any, *, preset: str | None = None, ignored_scope: Any = None,
                  target_device: str | None = None):
    """FP32 `ov.Model` -> INT8 `ov.Model` (NNCF PTQ, symmetric weights per channel; NNCF shows its own progress)."""
    import nncf

    preset = (preset or "performance").lower()
    if preset not in PRESETS:
        raise ConversionError(f"NNCF preset {preset!r} unknown (use {' or '.join(PRESETS)})")
    shape = tuple(model.inputs[0].get_partial_shape().to_shape())
    items = calibration_items(calib_inputs, shape)
    scope = to_ignored_scope(ignored_scope)
    device = nncf.TargetDevice[target_device] if target_device in TARGET_DEVICES else nncf.TargetDevice.ANY
    try:
        return nncf.quantize(model, nncf.Dataset(items), preset=nncf.QuantizationPreset(preset),
                             target_device=device, subset_size=len(items), ignored_scope=scope)
    except nncf.ValidationError as exc:  # e.g. an ignored-scope name that is not in the model
        raise ConversionError(f"NNCF ignored scope ({describe_scope(scope)}): {str(exc).splitlines()[0]}") from None


def _ops(model, types: Iterable[str]) -> list:
    types = set(types)
    return [op for op in model.get_ordered_ops() if op.get_type_name() in types]


def float_scopes(model) -> dict[str, dict[str, list[str]]]:
    """Mitigations this model allows, as ignored-scope mappings: first_conv, last_conv, sigmoid_gates.

    Sigmoid gates are kept in float by ignoring the Multiply each Sigmoid feeds (NNCF quantises the multiply's
    inputs, not the sigmoid itself). Only scopes that exist in this model are returned.
    """
    scopes: dict[str, dict[str, list[str]]] = {}
    convs = _ops(model, _CONV_TYPES)
    if convs:
        scopes["first_conv"] = {"names": [convs[0].get_friendly_name()]}
        scopes["last_conv"] = {"names": [convs[-1].get_friendly_name()]}
    gates = []
    for sig in _ops(model, ("Sigmoid",)):
        for target in sig.output(0).get_target_inputs():
            node = target.get_node()
            if node.get_type_name() == "Multiply":
                gates.append(node.get_friendly_name())
    if gates:
        scopes["sigmoid_gates"] = {"names": sorted(set(gates))}
    return scopes

"""Fill a Keras model from a PyTorch state dict, strictly: every tensor used, every weight filled, shapes checked.

Convention: every weight-carrying Keras layer is named by its mmpose 1.x PyTorch module path, so the mapping needs
no tables; only the layout of each tensor changes with the layer type. Checkpoints of mmpose 0.x name the head
`keypoint_head` (its deconv/final-layer indices are those of 1.x's HeatmapHead); the default renames map them.
A custom layer can take part by defining `torch_weight_names()` (suffixes, e.g. ["weight", "bias"]) and
`torch_to_keras(tensors: dict[suffix, np.ndarray]) -> list[np.ndarray]` in the order of `layer.get_weights()`.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable

import numpy as np

from converters.checkpoints import rename_keys
from edge_pose.errors import EdgePoseError

# (pattern, replacement) applied in order to checkpoint keys before matching.
MMPOSE_0X_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^keypoint_head\.", "head."),
)
IGNORED_SUFFIXES = ("num_batches_tracked",)
_LIST_LIMIT = 8


class WeightMismatchError(EdgePoseError):
    """A state dict that does not fit the model: missing, unexpected or wrongly shaped tensors."""


def apply_renames(state: dict[str, np.ndarray], renames: Iterable[tuple[str, str]] | Callable[[str], str] = ()
                  ) -> dict[str, np.ndarray]:
    """Rename checkpoint keys (regex pairs or a function); two keys landing on one name is an error."""
    if callable(renames):
        rename = renames
    else:
        compiled = [(re.compile(p), r) for p, r in renames]

        def rename(key: str) -> str:
            for pattern, repl in compiled:
                key = pattern.sub(repl, key)
            return key
    return rename_keys(state, rename, lambda key, new: WeightMismatchError(
        f"checkpoint keys collide after renaming: '{key}' -> '{new}'"))


def _conv(w):  # (O, I/g, kh, kw) -> (kh, kw, I/g, O)
    return np.transpose(w, (2, 3, 1, 0))


def _depthwise(w, layer):  # (C*m, 1, kh, kw) -> (kh, kw, C, m)
    c = layer.kernel.shape[2]
    m = layer.kernel.shape[3]
    if w.ndim != 4 or w.shape[0] != c * m:
        return w  # shape check reports it
    return np.transpose(w.reshape(c, m, w.shape[2], w.shape[3]), (2, 3, 0, 1))


def _deconv(w):  # (I, O, kh, kw) -> (kh, kw, O, I)
    return np.transpose(w, (2, 3, 1, 0))


def _dense(w):  # (O, I) -> (I, O)
    return np.transpose(w)


def _torch_shape(layer, suffix: str, keras_shape: tuple) -> tuple:
    """The PyTorch shape a checkpoint tensor must have for this Keras weight (for error messages)."""
    from keras import layers as L

    if suffix != "weight" or len(keras_shape) < 2:
        return keras_shape
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw, c, m = keras_shape
        return (c * m, 1, kh, kw)
    if isinstance(layer, (L.Conv2D, L.Conv2DTranspose)):
        kh, kw, a, b = keras_shape
        return (b, a, kh, kw)
    if isinstance(layer, L.Dense):
        return keras_shape[::-1]
    return keras_shape


def _layer_plan(layer) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]] | None:
    """(torch suffix, converter) for each entry of layer.get_weights(), or None for unsupported layers."""
    from keras import layers as L

    ident = lambda w: w  # noqa: E731
    if isinstance(layer, L.DepthwiseConv2D):
        plan = [("weight", lambda w: _depthwise(w, layer))]
        return plan + ([("bias", ident)] if layer.use_bias else [])
    if isinstance(layer, L.Conv2DTranspose):
        return [("weight", _deconv)] + ([("bias", ident)] if layer.use_bias else [])
    if isinstance(layer, L.Conv2D):
        return [("weight", _conv)] + ([("bias", ident)] if layer.use_bias else [])
    if isinstance(layer, L.Dense):
        return [("weight", _dense)] + ([("bias", ident)] if layer.use_bias else [])
    if isinstance(layer, L.BatchNormalization):
        plan = []
        if layer.scale:
            plan.append(("weight", ident))
        if layer.center:
            plan.append(("bias", ident))
        return plan + [("running_mean", ident), ("running_var", ident)]
    return None


def _weighted_layers(model):
    """Leaf layers that own weights, looking inside nested models/layers that hold sub-layers."""
    seen = set()
    stack = list(reversed(model.layers))
    while stack:
        layer = stack.pop()
        if id(layer) in seen or not layer.weights:
            continue
        seen.add(id(layer))
        if hasattr(layer, "torch_to_keras") or _layer_plan(layer) is not None:
            yield layer
        elif getattr(layer, "layers", None):
            stack.extend(reversed(layer.layers))
        else:
            yield layer


def _short(items: list[str]) -> str:
    head = ", ".join(items[:_LIST_LIMIT])
    return head + (f", ... (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def load_state_dict(model, state: dict[str, np.ndarray],
                    renames: Iterable[tuple[str, str]] | Callable[[str], str] = MMPOSE_0X_RENAMES,
                    source: str = "checkpoint") -> None:
    """Strictly copy `state` (PyTorch names/layouts) into `model` (layers named by PyTorch module paths)."""
    state = apply_renames(state, renames)
    used: set[str] = {k for k in state if k.rsplit(".", 1)[-1] in IGNORED_SUFFIXES}
    missing: list[str] = []
    mismatched: list[str] = []
    assignments = []
    for layer in _weighted_layers(model):
        if hasattr(layer, "torch_to_keras"):
            suffixes = list(layer.torch_weight_names())
            plan = None
        else:
            plan = _layer_plan(layer)
            if plan is None:
                raise WeightMismatchError(f"model layer '{layer.name}' ({type(layer).__name__}) has weights the "
                                          f"loader cannot map from PyTorch")
            suffixes = [s for s, _ in plan]
        keys = [f"{layer.name}.{s}" for s in suffixes]
        absent = [k for k in keys if k not in state]
        if absent:
            missing.extend(absent)
            used.update(k for k in keys if k in state)
            continue
        used.update(keys)
        if plan is None:
            values = layer.torch_to_keras({s: np.asarray(state[k]) for s, k in zip(suffixes, keys)})
        else:
            values = [conv(np.asarray(state[k])) for (_, conv), k in zip(plan, keys)]
        targets = layer.get_weights()
        bad = False
        for key, value, target in zip(keys, values, targets):
            if tuple(value.shape) != tuple(target.shape):
                need = _torch_shape(layer, key.rsplit(".", 1)[-1], tuple(target.shape)) if plan else target.shape
                mismatched.append(f"{key} {tuple(state[key].shape)} != {tuple(need)}")
                bad = True
        if not bad:
            assignments.append((layer, [v.astype(t.dtype) for v, t in zip(values, targets)]))
    unexpected = sorted(k for k in state if k not in used)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_short(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatch {len(mismatched)}: {_short(mismatched)}")
        raise WeightMismatchError(f"{source} does not fit model '{model.name}': " + "; ".join(parts))
    for layer, values in assignments:
        layer.set_weights(values)

"""Keras models: a zoo name (built by converters.zoo, with or without an mmpose checkpoint) or a .keras file.

Exporters read Keras models through `saved_model_dir()`: a SavedModel with ONE fixed batch-1 signature written by
Keras' own ExportArchive. (Wrapping a Keras 3 model in a tf.function lambda and converting the concrete function
silently loses the weights; a tracked export keeps them.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_pose.bundle import DecodeSpec, InputSpec
from edge_pose.keypoints import keypoint_spec

from converters.errors import SourceError
from converters.sources import facts as F
from converters.sources.base import Source, sha256_path

MMPOSE_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 units: what every zoo model is trained with
MMPOSE_STD = (58.395, 57.12, 57.375)


class KerasSource(Source):
    kind = "keras"

    def __init__(self, *, keras_model, **kw):
        super().__init__(**kw)
        self.keras_model = keras_model
        self._fn = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._fn is None:
            import tensorflow as tf

            model = self.keras_model
            self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        out = self._fn(batch)
        if isinstance(out, (list, tuple)):
            out = out[self._output_index()]
        elif isinstance(out, dict):
            out = out[self.output.name]
        return np.asarray(out)

    def _output_index(self) -> int:
        names = output_names(self.keras_model)
        return names.index(self.output.name) if self.output.name in names else 0

    def saved_model_dir(self) -> Path:
        """A SavedModel of this model with one signature `serving_default`: (1,H,W,3) float32 -> heatmaps."""
        if "saved_model" not in self.cache:
            import tensorflow as tf
            from keras.export import ExportArchive

            out = self.workdir() / "saved_model"
            model = self.keras_model
            index = self._output_index() if len(model.outputs) > 1 else None
            archive = ExportArchive()
            archive.track(model)
            archive.add_endpoint(
                name="serve",
                fn=lambda x: model(x, training=False) if index is None else model(x, training=False)[index],
                input_signature=[tf.TensorSpec(self.input_shape, tf.float32, name=self.input.name)],
            )
            archive.write_out(str(out), verbose=False)
            self.cache["saved_model"] = out
        return self.cache["saved_model"]


def output_names(model) -> list[str]:
    """Names of the layers producing the model's outputs (Keras 3 tensor names are meaningless counters)."""
    names = list(getattr(model, "output_names", None) or [])
    return names if len(names) == len(model.outputs) else [f"output_{i}" for i in range(len(model.outputs))]


def _meta(entry: Any, key: str, default=None):
    if isinstance(entry, dict):
        return entry.get(key, default)
    return getattr(entry, key, default)


def load_zoo(name: str, facts: F.Facts, checkpoint: Path | None, seed: int, for_format: str | None = None
             ) -> KerasSource:
    """A zoo model; the zoo knows its normalisation and keypoints, so the user states none of it.

    for_format: the model's graph variant for one target (converters.zoo.build_model)."""
    from converters.zoo import ZOO, build_model

    entry = ZOO[name]
    if facts.layout not in (None, "NHWC") or facts.color not in (None, "rgb"):
        raise SourceError(f"{name}: zoo models take NHWC RGB input; drop --layout/--color")
    size = facts.input_size or tuple(_meta(entry, "input_size", None) or _meta(entry, "default_input_size",
                                                                             (256, 192)))
    kp_name = _meta(entry, "keypoints", "coco17")
    keypoints = facts.keypoints or (kp_name if not isinstance(kp_name, str) else keypoint_spec(kp_name))
    model = build_model(name, input_size=size, checkpoint=checkpoint, seed=seed, num_keypoints=len(keypoints.names),
                        for_format=for_format)
    inp = InputSpec(name="input", height=int(size[0]), width=int(size[1]), layout="NHWC", dtype="float32",
                    color="rgb", mean=facts.mean or tuple(_meta(entry, "mean", MMPOSE_MEAN)),
                    std=facts.std or tuple(_meta(entry, "std", MMPOSE_STD)))
    out_name = output_names(model)[0]
    shape = [1] + [int(d) for d in model.outputs[0].shape[1:]]
    decode = _meta(entry, "decode", None)
    decode = decode if isinstance(decode, DecodeSpec) else DecodeSpec(method=decode) if isinstance(decode, str) \
        else DecodeSpec()
    return KerasSource(keras_model=model, path=None, model_name=name, input=inp,
                       output=F.output_spec(name, out_name, shape, keypoints, "NHWC"), keypoints=keypoints,
                       sha256=sha256_path(checkpoint) if checkpoint else None, untrained=checkpoint is None,
                       family=_meta(entry, "family", None), checkpoint=checkpoint, decode=decode, fixed_batch=1)


def load_keras_file(path: Path, facts: F.Facts) -> KerasSource:
    import keras

    import converters.models  # noqa: F401  (registers any custom layers the zoo defines)

    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises many types for a bad file
        raise SourceError(f"{path}: not a readable Keras model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if len(model.inputs) != 1:
        raise SourceError(f"{path}: {len(model.inputs)} inputs; a pose model takes exactly one image input")
    in_shape = [None] + [d for d in model.inputs[0].shape[1:]]
    inp, missing = F.input_spec(str(path), model.inputs[0].name.split(":")[0], [1] + in_shape[1:], facts)
    outputs = {n: [1] + list(t.shape[1:]) for n, t in zip(output_names(model), model.outputs)}
    out_name, missing_out = F.choose_output(str(path), outputs, facts)
    missing += missing_out + (["keypoints"] if facts.keypoints is None else [])
    if missing:
        raise F.missing_error(str(path), missing, outputs)
    if None in in_shape[1:]:
        raise SourceError(f"{path}: the Keras model has open spatial input dims {in_shape}; rebuild it with a "
                          f"fixed input size")
    src = KerasSource(keras_model=model, path=path, model_name=path.stem, input=inp,
                      output=F.output_spec(str(path), out_name, [1, 1, 1, 1], None, inp.layout),
                      keypoints=facts.keypoints, sha256=sha256_path(path), fixed_batch=1)
    shape = outputs[out_name]
    if None in shape:
        shape = list(src._infer(np.zeros(src.input_shape, np.float32)).shape)
    src.output = F.output_spec(str(path), out_name, shape, facts.keypoints, inp.layout)
    return src

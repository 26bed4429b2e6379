"""TF SavedModel directories: the `serving_default` signature gives input and output names and shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_pose.bundle import OutputSpec

from converters.errors import SourceError
from converters.sources import facts as F
from converters.sources.base import Source, sha256_path

SIGNATURE = "serving_default"


class SavedModelSource(Source):
    kind = "savedmodel"

    def __init__(self, *, loaded, signature_input: str, **kw):
        super().__init__(**kw)
        self.loaded = loaded
        self.signature_input = signature_input  # the signature's argument name (may differ from the tensor name)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.loaded.signatures[SIGNATURE](**{self.signature_input: batch})
        return np.asarray(out[self.output.name])

    def saved_model_dir(self) -> Path:
        """The SavedModel with a fixed batch-1 signature: the directory itself when it already has one, else a
        re-saved copy whose signature pins the batch and the input size (converters need static shapes)."""
        if "saved_model" in self.cache:
            return self.cache["saved_model"]
        import tensorflow as tf

        fn = self.loaded.signatures[SIGNATURE]
        spec = fn.structured_input_signature[1][self.signature_input]
        if list(spec.shape) == list(self.input_shape):
            self.cache["saved_model"] = self.path
            return self.path
        name, key = self.signature_input, self.output.name

        module = tf.Module()
        module.inner = self.loaded

        @tf.function(input_signature=[tf.TensorSpec(self.input_shape, tf.float32, name=name)])
        def serve(x):
            return {key: module.inner.signatures[SIGNATURE](**{name: x})[key]}

        module.serve = serve
        out = self.workdir() / "saved_model"
        tf.saved_model.save(module, str(out), signatures={SIGNATURE: serve})
        self.cache["saved_model"] = out
        return out


def load_savedmodel(path: Path, facts: F.Facts) -> SavedModelSource:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TF raises many types for a bad directory
        raise SourceError(f"{path}: not a readable SavedModel ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if SIGNATURE not in getattr(loaded, "signatures", {}):
        raise SourceError(f"{path}: the SavedModel has no {SIGNATURE!r} signature")
    fn = loaded.signatures[SIGNATURE]
    ins = fn.structured_input_signature[1]
    if len(ins) != 1:
        raise SourceError(f"{path}: signature {SIGNATURE} takes {len(ins)} inputs ({', '.join(ins)}); a pose model "
                          f"takes exactly one image input")
    arg, spec = next(iter(ins.items()))
    raw = spec.shape.as_list() if spec.shape.rank is not None else [None] * 4
    if len(raw) == 4 and raw[0] not in (None, 1):
        raise SourceError(f"{path}: input batch is fixed at {raw[0]}; edge-pose needs batch 1")
    inp, missing = F.input_spec(str(path), arg, [1] + raw[1:] if len(raw) == 4 else raw, facts)
    outs = {k: (v.shape.as_list() if v.shape.rank is not None else None) for k, v in fn.structured_outputs.items()}
    out_name, missing_out = F.choose_output(str(path), outs, facts)
    missing += missing_out + (["keypoints"] if facts.keypoints is None else [])
    if missing:
        raise F.missing_error(str(path), missing, outs)
    src = SavedModelSource(loaded=loaded, signature_input=arg, path=path, model_name=path.name, input=inp,
                           output=OutputSpec(name=out_name, heatmap_height=1, heatmap_width=1),
                           keypoints=facts.keypoints, sha256=sha256_path(path),
                           fixed_batch=None if raw[0] is None else 1)
    shape = outs[out_name]
    if not shape or None in shape[1:]:
        shape = list(src._infer(np.zeros(src.input_shape, np.float32)).shape)
    src.output = F.output_spec(str(path), out_name, [1] + list(shape[1:]), facts.keypoints, inp.layout)
    return src

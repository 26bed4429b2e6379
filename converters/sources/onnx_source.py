"""ONNX files: read names and shapes from the file, prepare a converter-friendly copy, run with onnxruntime."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_pose.bundle import OutputSpec

from converters.errors import SourceError
from converters.sources import facts as F
from converters.sources.base import Source, sha256_path


class OnnxSource(Source):
    kind = "onnx"

    def __init__(self, *, onnx_path: Path, **kw):
        super().__init__(**kw)
        self.onnx_path = onnx_path  # the prepared copy (opset >= 13, static shapes): what converters read
        self._session = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            # The prepared copy computes the same function as the file (checked in tests) and has static shapes.
            self._session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
        return self._session.run([self.output.name], {self.input.name: batch})[0]


def _read(path: Path):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise SourceError(f"{path}: not a readable ONNX model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'parse failed'})") from None
    if not model.graph.node:
        raise SourceError(f"{path}: not a readable ONNX model (empty graph)")
    return model


def _check_ops(path: Path, model) -> None:
    import onnx

    unknown = sorted({f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in model.graph.node
                      if not onnx.defs.has(n.op_type, n.domain or "")})
    if unknown:
        raise SourceError(f"{path}: unsupported (non-standard) ONNX ops: {', '.join(unknown)}")


def load_onnx(path: Path, facts: F.Facts) -> OnnxSource:
    import onnx

    from converters.sources.onnx_prepare import dims, prepare

    model = _read(path)
    _check_ops(path, model)
    weights = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise SourceError(f"{path}: {len(inputs)} graph inputs ({', '.join(i.name for i in inputs)}); "
                          f"a pose model takes exactly one image input")
    raw_shape = dims(inputs[0])
    if len(raw_shape) == 4 and raw_shape[0] not in (None, 1):
        raise SourceError(f"{path}: input batch is fixed at {raw_shape[0]}; edge-pose needs batch 1")
    inp, missing = F.input_spec(str(path), inputs[0].name, [1] + raw_shape[1:] if raw_shape else raw_shape, facts)
    candidates = {o.name: dims(o) for o in model.graph.output}
    out_name, missing_out = F.choose_output(str(path), candidates, facts)
    missing += missing_out + (["keypoints"] if facts.keypoints is None else [])
    if missing:
        raise F.missing_error(str(path), missing, candidates)
    h, w = inp.size
    shape = (1, 3, h, w) if inp.layout == "NCHW" else (1, h, w, 3)
    try:
        prepared = prepare(model, {inp.name: shape})
    except Exception as exc:  # onnx raises many types; any failure here means the file cannot be converted
        raise SourceError(f"{path}: cannot prepare the ONNX model for conversion ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    out_shape = next(dims(o) for o in prepared.graph.output if o.name == out_name)
    src = OnnxSource(onnx_path=Path("unset"), path=path, model_name=path.parent.name if path.stem == "model"
                     else path.stem, input=inp, output=None, keypoints=facts.keypoints, sha256=sha256_path(path))
    src.onnx_path = src.workdir() / "prepared.onnx"
    onnx.save(prepared, str(src.onnx_path))
    # Drop every graph output but the heatmaps, so converters build only what is used.
    if len(prepared.graph.output) > 1:
        keep = [o for o in prepared.graph.output if o.name == out_name]
        del prepared.graph.output[:]
        prepared.graph.output.extend(keep)
        onnx.save(prepared, str(src.onnx_path))
    if not out_shape or None in out_shape:  # shape inference could not tell: ask the model itself
        src.output = OutputSpec(name=out_name, heatmap_height=1, heatmap_width=1)
        out_shape = list(src._infer(np.zeros(shape, np.float32)).shape)
    src.output = F.output_spec(str(path), out_name, out_shape, facts.keypoints, inp.layout)
    return src

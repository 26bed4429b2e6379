"""TF1 frozen graphs (.pb): placeholders are the inputs, unconsumed float ops the candidate outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_pose.bundle import OutputSpec

from converters.errors import SourceError
from converters.sources import facts as F
from converters.sources.base import Source, sha256_path

# Ops that end a graph without being a model output.
NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Assert", "SaveV2", "RestoreV2",
               "VariableV2", "VarHandleOp", "Shape", "Size", "Rank"}


class FrozenGraphSource(Source):
    kind = "frozen_graph"

    def __init__(self, *, graph_def, **kw):
        super().__init__(**kw)
        self.pb_path = self.path
        self.graph_def = graph_def
        self._session = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            import tensorflow as tf

            graph = tf.Graph()
            with graph.as_default():
                tf.compat.v1.import_graph_def(self.graph_def, name="")
            self._session = tf.compat.v1.Session(graph=graph)
        return self._session.run(f"{self.output.name}:0", {f"{self.input.name}:0": batch})


def _read(path: Path):
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise SourceError(f"{path}: not a readable TensorFlow frozen graph ({type(exc).__name__})") from None
    if not graph_def.node:
        raise SourceError(f"{path}: not a readable TensorFlow frozen graph (no nodes)")
    return graph_def


def _shape(attr) -> list[int | None] | None:
    if attr.unknown_rank:
        return None
    return [d.size if d.size > 0 else None for d in attr.dim]


def import_at_size(graph_def, input_name: str, layout: str, size: tuple[int, int]):
    """The graph imported with a batch-1 input of `size` (H, W), so static shapes flow to every tensor."""
    import tensorflow as tf

    h, w = size
    graph = tf.Graph()
    with graph.as_default():
        fixed = tf.compat.v1.placeholder(tf.float32, (1, 3, h, w) if layout == "NCHW" else (1, h, w, 3))
        tf.compat.v1.import_graph_def(graph_def, name="", input_map={f"{input_name}:0": fixed})
    return graph


def load_frozen_graph(path: Path, facts: F.Facts) -> FrozenGraphSource:
    import tensorflow as tf

    graph_def = _read(path)
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    if len(placeholders) != 1:
        raise SourceError(f"{path}: {len(placeholders)} placeholder inputs "
                          f"({', '.join(n.name for n in placeholders) or 'none'}); a pose model takes one image")
    ph = placeholders[0]
    raw = _shape(ph.attr["shape"].shape) or [None] * 4
    if len(raw) == 4 and raw[0] not in (None, 1):
        raise SourceError(f"{path}: input batch is fixed at {raw[0]}; edge-pose needs batch 1")
    inp, missing = F.input_spec(str(path), ph.name, [1] + raw[1:] if len(raw) == 4 else raw, facts)
    try:
        graph = import_at_size(graph_def, ph.name, inp.layout, inp.size)
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        raise SourceError(f"{path}: the graph does not import ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0]})") from None
    consumed = {i.lstrip("^").split(":")[0] for n in graph_def.node for i in n.input}
    candidates = {}
    for node in graph_def.node:
        if node.name in consumed or node.op in NOT_OUTPUTS or node.name == ph.name:
            continue
        t = graph.get_tensor_by_name(f"{node.name}:0") if graph.get_operation_by_name(node.name).outputs else None
        if t is not None and t.dtype == tf.float32 and t.shape.rank in (None, 4):
            candidates[node.name] = t.shape.as_list() if t.shape.rank else None
    if facts.output:  # any float 4-D node may be named, not only the unconsumed ones
        try:
            t = graph.get_tensor_by_name(f"{facts.output}:0")
        except (KeyError, ValueError):
            raise SourceError(f"{path}: no node named {facts.output!r}; candidate outputs are "
                              f"{', '.join(candidates) or 'none'}") from None
        candidates[facts.output] = t.shape.as_list() if t.shape.rank else None
    out_name, missing_out = F.choose_output(str(path), candidates, facts)
    missing += missing_out + (["keypoints"] if facts.keypoints is None else [])
    if missing:
        raise F.missing_error(str(path), missing, candidates)
    src = FrozenGraphSource(graph_def=graph_def, path=path, model_name=path.parent.name if path.stem == "model"
                            else path.stem, input=inp, output=OutputSpec(name=out_name, heatmap_height=1,
                                                                         heatmap_width=1),
                            keypoints=facts.keypoints, sha256=sha256_path(path), fixed_batch=None if raw[0] is None
                            else 1)
    out_shape = candidates[out_name]
    if not out_shape or None in out_shape:
        out_shape = list(src._infer(np.zeros(src.input_shape, np.float32)).shape)
    src.output = F.output_spec(str(path), out_name, out_shape, facts.keypoints, inp.layout)
    return src

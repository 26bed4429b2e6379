"""The cut SSD graph -> TFLite (fp32, full int8 with float I/O) and OpenVINO IR (FP32, INT8 by NNCF).

Both roads start from the cut frozen graph (never OpenVINO from the .tflite: DESIGN.md pitfalls) with a fixed
batch-1 input. Calibration inputs are whole frames preprocessed exactly as the runtime Detector does it
(`calibration_inputs`), not crops: a detector sees the frame. The pose exporters' lower-level pieces are reused
(converter settings and one-line errors, the .tflite inspection, NNCF quantisation); their top-level functions are
not, since they expect one heatmap output and a detector has two.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from converters.detect.ssd_tfod import BOXES, CLASSES, INPUT, SsdCut
from converters.errors import ConversionError
from converters.export.result import ExportResult

TFLITE_PRECISIONS = ("fp32", "fp16", "int8")
OPENVINO_PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # bf16: the FP32 IR, run with bf16 arithmetic


def calibration_inputs(images_bgr: Iterable[np.ndarray], spec: dict, flips: bool = True,
                       zoom: float | None = None) -> np.ndarray:
    """Frames -> the detector's input tensors [N, h, w, 3] by the runtime's own preprocessing (and mirror images,
    which are real frames too: a 4-image set doubles without inventing pixels).

    zoom (e.g. 0.8) adds each frame's centre crop of that share of its height and width, as a camera zoomed in by
    1/zoom would see it: the same pixels at a larger scale, so people appear at more of the detector's anchor sizes.
    """
    from edge_pose.detect.detector import Detector

    det = Detector(None, spec)
    views = []
    for img in images_bgr:
        views.append(img)
        if zoom:
            h, w = img.shape[:2]
            dh, dw = int(round(h * (1 - zoom) / 2)), int(round(w * (1 - zoom) / 2))
            views.append(np.ascontiguousarray(img[dh:h - dh, dw:w - dw]))
    out = []
    for img in views:
        out.append(det.prepare(img)[0][0])
        if flips:
            out.append(det.prepare(np.ascontiguousarray(img[:, ::-1]))[0][0])
    if not out:
        raise ConversionError("detector int8: no calibration frames")
    return np.stack(out).astype(np.float32)


def _check_calib(calib, cut: SsdCut, where: str) -> np.ndarray:
    from converters.export.tflite import check_calibration

    return check_calibration(calib, cut.input_shape, where, "int8 needs calibration frames (see calibration_inputs)")


def _output_names(info, cut: SsdCut, where: str) -> dict[str, str]:
    """Our output names -> the .tflite tensor names (by name, else by the unambiguous last dimension)."""
    a = len(cut.anchors)
    found = {}
    for want, last in ((BOXES, 4), (CLASSES, None)):
        named = [t for t in info.outputs if t.name == want]
        shaped = [t for t in info.outputs if len(t.shape) == 3 and t.shape[1] == a and
                  ((t.shape[2] == 4) if last == 4 else (t.shape[2] != 4 or t.name != found.get(BOXES)))]
        pick = named or [t for t in shaped if t.name not in found.values()]
        if not pick:
            raise ConversionError(f"{where}: no output for {want} among {[t.name for t in info.outputs]}")
        found[want] = pick[0].name
    return found


def export_tflite(cut: SsdCut, precision: str, out_file, calib_inputs=None, float_ops=()) -> ExportResult:
    """Write the cut graph as a .tflite at fp32 or full int8 (per-channel weights, float32 I/O)."""
    import tensorflow as tf

    from converters.export.tflite import configure, convert_bytes
    from converters.export.tflite_inspect import inspect_tflite

    where = f"{cut.source or 'ssd'} -> TFLite {precision}"
    if precision not in TFLITE_PRECISIONS:
        raise ConversionError(f"{where}: unknown precision; choose one of {', '.join(TFLITE_PRECISIONS)}")
    calib = _check_calib(calib_inputs, cut, where) if precision == "int8" else None
    out_file = Path(out_file)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        pb = cut.write(Path(tmp) / "cut.pb")

        def make():
            return tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
                str(pb), [INPUT], [BOXES, CLASSES], {INPUT: list(cut.input_shape)})

        notes = ["cut SSD frozen graph via the TF1 frozen-graph converter, batch 1"]
        if float_ops and precision == "int8":  # selective quantisation, as the pose exporter's guard rungs do
            from converters.export.tflite_float_ops import convert_keeping_float

            data, more = convert_keeping_float(make, precision, "float32", calib, float_ops, where)
            notes += more
        else:
            converter = make()
            notes += configure(converter, precision, "float32", calib)
            data = convert_bytes(converter, where)
    info = inspect_tflite(data, where)
    names = _output_names(info, cut, where)
    from converters.export.tflite import write_atomic

    write_atomic(data, out_file)
    inp = info.inputs[0]
    floats = info.float_compute_ops() if precision == "int8" else []
    if floats:
        notes.append(f"{len(floats)} op(s) compute in float: {', '.join(sorted({o.op for o in floats}))}")
    return ExportResult(
        format="tflite", precision=precision, files={out_file.name: out_file}, model_file=out_file.name,
        input_name=inp.name, output_name=names[BOXES], input_layout="NHWC", output_layout="NAC",
        input_shape=inp.shape, output_shape=next(t.shape for t in info.outputs if t.name == names[BOXES]),
        ops=info.op_names, tools={"tensorflow": tf.__version__}, seconds=time.time() - start, notes=notes,
        extra={"outputs": names, "op_counts": info.op_counts(), "bytes": len(data)})


def read_openvino(cut: SsdCut):
    """The cut frozen graph as an ov.Model with a static batch-1 input and our two outputs, by name."""
    import openvino as ov

    from converters.export.openvino_read import one_line

    with tempfile.TemporaryDirectory() as tmp:
        pb = cut.write(Path(tmp) / "cut.pb")
        try:
            model = ov.convert_model(str(pb), input=[(INPUT + ":0", list(cut.input_shape))],
                                     output=[BOXES + ":0", CLASSES + ":0"])
        except Exception as exc:  # OpenVINO's frontends raise bare exceptions with C++ traces
            raise ConversionError(f"{cut.source}: OpenVINO cannot read the cut graph: {one_line(exc)}") from None
    for port, name in zip(model.outputs, (BOXES, CLASSES)):
        port.get_tensor().add_names({name})
    model.inputs[0].get_tensor().add_names({INPUT})
    return model


_CONVS = ("Convolution", "GroupConvolution")


def head_convs(model) -> list[str]:
    """The box-predictor convs: convolutions from which an output is reached without passing another conv.

    Found by structure, not by name (OpenVINO's TF frontend names fused convs from a per-process counter)."""
    heads = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _CONVS:
            continue
        todo, seen, reaches = [op], set(), False
        while todo:
            node = todo.pop()
            for out in node.outputs():
                for t in out.get_target_inputs():
                    nxt = t.get_node()
                    kind = nxt.get_type_name()
                    if kind == "Result":
                        reaches = True
                    elif kind not in _CONVS and nxt.get_friendly_name() not in seen:
                        seen.add(nxt.get_friendly_name())
                        todo.append(nxt)
        if reaches:
            heads.append(op.get_friendly_name())
    return heads


def export_openvino(cut: SsdCut, precision: str, out_dir, calib_inputs=None, float_heads: bool = True,
                    preset: str | None = None, ranges: str | None = "minmax") -> ExportResult:
    """Write model.xml/.bin for the cut graph: FP32, or INT8 by NNCF post-training quantisation on real frames.

    float_heads keeps the 12 box-predictor convs (box encodings and class logits, 1x1 convs of a few channels:
    little time) in float; preset/ranges are NNCF's (see converters.export.nncf_quantize). The defaults are the
    best measured on coco-mini: person box AP 43.5 float -> 39.8 NNCF default, 41.1 min-max, 42.1 float heads +
    min-max (bias correction off: 42.3; MIXED preset 42.2; depthwise convs in float 40.5)."""
    import openvino as ov

    where = f"{cut.source or 'ssd'} -> OpenVINO {precision}"
    if precision not in OPENVINO_PRECISIONS:
        raise ConversionError(f"{where}: unknown precision; choose one of {', '.join(OPENVINO_PRECISIONS)}")
    start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = read_openvino(cut)
    notes = [f"IR from the cut frozen graph, static input {list(cut.input_shape)} (NHWC)"]
    tools = {"openvino": ov.get_version()}
    if precision == "int8":
        import nncf

        from converters.export.nncf_quantize import quantize_int8

        calib = _check_calib(calib_inputs, cut, where)
        t = time.time()
        heads = head_convs(model) if float_heads else []
        scope = nncf.IgnoredScope(names=heads) if heads else None
        model = quantize_int8(model, list(calib[:, None]), preset=preset, ranges=ranges, scope=scope)
        tools["nncf"] = nncf.__version__
        notes.append(f"INT8 by NNCF post-training quantisation ({preset or 'performance'} preset, "
                     f"{ranges or 'default'} ranges, {len(heads)} head convs in float), {len(calib)} calibration "
                     f"frames, {time.time() - t:.1f} s")
    xml = out_dir / "model.xml"
    ov.save_model(model, str(xml), compress_to_fp16=(precision == "fp16"))
    saved = ov.Core().read_model(str(xml))
    names = {n: next(o.get_any_name() for o in saved.outputs if n in o.get_names()) for n in (BOXES, CLASSES)}
    return ExportResult(
        format="openvino", precision=precision, files={"model.xml": xml, "model.bin": out_dir / "model.bin"},
        model_file="model.xml", input_name=INPUT, output_name=BOXES, input_layout="NHWC", output_layout="NAC",
        input_shape=tuple(saved.inputs[0].get_partial_shape().to_shape()),
        output_shape=tuple(saved.outputs[0].get_partial_shape().to_shape()),
        ops=sorted({op.get_type_name() for op in saved.get_ordered_ops()}), tools=tools,
        seconds=time.time() - start, notes=notes,
        extra={"outputs": names, "fake_quantize_ops": sum(op.get_type_name() == "FakeQuantize"
                                                          for op in saved.get_ordered_ops())})

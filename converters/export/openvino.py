"""OpenVINO IR export: FP32, FP16 (compressed weights), BF16 (FP32 weights, validated and run with bf16 arithmetic on
CPUs that have it) or INT8 (NNCF PTQ), static shapes, optional device blob.

The IR keeps the source's layout (NCHW for ONNX, NHWC for TF/Keras); the exporter records it, with the tensor
names, in the ExportResult so the pipeline writes the manifest from facts, not guesses. A precompiled blob
(`model.<device>.blob`) is made only where that device's plugin is present; elsewhere a note says so, because a
workstation without an NPU must still be able to build a bundle for one (the device then compiles at first load).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from converters.errors import ConversionError
from converters.export.openvino_read import one_line, read_static_model, tensor_name
from converters.export.result import ExportResult

from registry import FORMATS, execution_of

PRECISIONS = FORMATS["openvino"].precisions


def export_openvino(source: Any, precision: str, out_dir, calib_inputs=None, blob_device: str | None = None,
                    ignored_scope=None, preset: str | None = None, ranges: str | None = None) -> ExportResult:
    """Write model.xml/model.bin (and model.<device>.blob when asked and possible) into out_dir."""
    import openvino as ov

    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ConversionError(f"OpenVINO precision {precision!r} unsupported (use {', '.join(PRECISIONS)})")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = read_static_model(source)
    notes = [f"IR read from the {source.kind} source; static input shape "
             f"{list(model.inputs[0].get_partial_shape().to_shape())} ({source.input.layout})"]
    tools = {"openvino": ov.get_version()}
    extra: dict[str, Any] = {}
    if precision == "int8":
        model = _quantize(model, source, calib_inputs, dict(preset=preset, ranges=ranges), ignored_scope, blob_device,
                          notes, tools, extra)
    xml = out_dir / "model.xml"
    # FP16 compresses weights; INT8 keeps the float parts (ignored scopes) in FP32 so a kept layer is really float.
    ov.save_model(model, str(xml), compress_to_fp16=(precision == "fp16"))
    files = {"model.xml": xml, "model.bin": out_dir / "model.bin"}
    if precision == "fp16":
        notes.append("weights compressed to FP16; validated and run with f32 arithmetic")
    if precision == "bf16":
        notes.append("FP32 weights; validated and run with bf16 arithmetic (INFERENCE_PRECISION_HINT=bf16)")
    blobs: dict[str, str] = {}
    if blob_device:
        blob, note = export_blob(xml, blob_device, precision, out_dir)
        notes.append(note)
        if blob is not None:
            files[blob.name] = blob
            blobs[blob_device.upper()] = blob.name
    saved = ov.Core().read_model(str(xml))
    ops = sorted({op.get_type_name() for op in saved.get_ordered_ops()})
    extra["fake_quantize_ops"] = sum(op.get_type_name() == "FakeQuantize" for op in saved.get_ordered_ops())
    return ExportResult(
        format="openvino", precision=precision, files=files, model_file="model.xml",
        input_name=tensor_name(saved.inputs[0], source.input.name),
        output_name=tensor_name(saved.outputs[0], source.output.name),
        input_layout=source.input.layout, output_layout=source.output.layout,
        input_dtype="float32", output_dtype="float32",
        input_shape=tuple(saved.inputs[0].get_partial_shape().to_shape()),
        output_shape=tuple(saved.outputs[0].get_partial_shape().to_shape()),
        ops=ops, blobs=blobs, tools=tools, seconds=time.perf_counter() - start, notes=notes, extra=extra)


def _quantize(model, source, calib_inputs, settings, ignored_scope, blob_device, notes, tools, extra):
    import nncf

    from converters.export.nncf_quantize import calibration_items, quantize_int8, resolve_scope

    scope, scope_text = resolve_scope(ignored_scope, model, len(source.keypoints.names))
    items = calibration_items(calib_inputs, tuple(model.inputs[0].get_partial_shape().to_shape()))
    started = time.perf_counter()
    target = blob_device.upper() if blob_device else None
    quantized = quantize_int8(model, items, scope=scope, target_device=target, **settings)
    seconds = time.perf_counter() - started
    tools["nncf"] = nncf.__version__
    extra.update(preset=(settings["preset"] or "performance").lower(), ranges=(settings["ranges"] or "default").lower(),
                 ignored_scope=scope_text, ignored_nodes=list(scope.names) if scope is not None else [],
                 calibration_size=len(items), quantize_seconds=round(seconds, 2))
    notes.append(f"INT8 by NNCF post-training quantisation: preset {extra['preset']}, activation ranges "
                 f"{extra['ranges']}, {len(items)} calibration inputs, kept in float: {scope_text}, target device "
                 f"{target or 'ANY'}, {seconds:.1f} s")
    return quantized


def openvino_float_scopes(source: Any) -> dict[str, list[str]]:
    """The float-scope mitigations (by name) that apply to this source's OpenVINO model, with their node names."""
    from converters.export.nncf_quantize import float_scopes

    model = read_static_model(source)
    return {k: v["names"] for k, v in float_scopes(model, len(source.keypoints.names)).items()}


def _device_present(core, device: str) -> bool:
    return any(d == device or d.startswith(device + ".") for d in core.available_devices)


def export_blob(xml: Path, device: str, precision: str, out_dir: Path) -> tuple[Path | None, str]:
    """Compile the saved IR for `device` and export it as model.<device>.blob; (None, note) when the plugin is absent.

    A blob only loads with the same OpenVINO version and device driver that made it (the manifest records both).
    """
    import openvino as ov

    device = device.upper()
    core = ov.Core()
    if not _device_present(core, device):
        return None, (f"no {device} blob: the {device} device/plugin is not present here (available: "
                      f"{', '.join(core.available_devices) or 'none'}); {device} compiles the IR at first load")
    # the blob is compiled as the runtime will compile the IR: at the precision the bundle is validated at
    config = {"INFERENCE_PRECISION_HINT": execution_of("openvino", precision)} if device in ("CPU", "GPU") else {}
    try:
        compiled = core.compile_model(str(xml), device, config)
        data = compiled.export_model()
        data = data.getvalue() if hasattr(data, "getvalue") else bytes(data)  # BytesIO in OpenVINO 2026
    except Exception as exc:
        raise ConversionError(f"{xml}: {device} cannot compile this model: {one_line(exc)}") from None
    blob = out_dir / f"model.{device.lower()}.blob"
    blob.write_bytes(data)
    return blob, f"precompiled {device} blob {blob.name} (OpenVINO {ov.get_version()}, {len(data)} bytes)"

"""The manifest of a converted bundle, from facts only: the Source (what the model is), the ExportResult (what the
converter made of its I/O) and the pipeline (calibration set, fidelity, guard). Nothing here guesses."""
from __future__ import annotations

import datetime as _dt
from importlib import metadata
from typing import Any

from edge_pose.bundle import InputSpec, Manifest, OutputSpec

TOOLS = {"edge-pose": ("edge-pose",), "tensorflow": ("tensorflow-cpu", "tensorflow"), "keras": ("keras",),
         "openvino": ("openvino",), "nncf": ("nncf",), "onnx2tf": ("onnx2tf",), "onnx": ("onnx",),
         "onnxruntime": ("onnxruntime",), "ai-edge-litert": ("ai-edge-litert",), "numpy": ("numpy",)}


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools a conversion may use (read from package metadata, nothing imported)."""
    found = {}
    for label, dists in TOOLS.items():
        for dist in dists:
            try:
                found[label] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def devices_for(fmt: str, precision: str, requested: str | None = None) -> list[str]:
    """The profiles this bundle is for: the one asked for, else every profile whose default set includes it."""
    if requested:
        return [requested]
    from devices.profiles import load_profiles

    return sorted(name for name, p in load_profiles().items() if (fmt, precision) in p.convert_targets)


def build_manifest(source: Any, result: Any, *, devices: list[str], calibration: dict | None,
                   evaluation: dict | None, seed: int, extra_provenance: dict | None = None) -> Manifest:
    """A complete manifest (fidelity still empty) for the files `result` describes."""
    src_in, src_out = source.input, source.output
    inp = InputSpec(name=result.input_name, height=src_in.height, width=src_in.width, layout=result.input_layout,
                    dtype=result.input_dtype, color=src_in.color, mean=tuple(src_in.mean), std=tuple(src_in.std),
                    quantization=result.input_quantization)
    out = OutputSpec(name=result.output_name, heatmap_height=src_out.heatmap_height,
                     heatmap_width=src_out.heatmap_width, layout=result.output_layout, dtype=result.output_dtype,
                     quantization=result.output_quantization)
    tools = tool_versions()
    tools.update(result.tools or {})
    provenance = dict(source.provenance())
    if source.checkpoint:
        from edge_pose.digests import sha256_file

        provenance["checkpoint_sha256"] = sha256_file(source.checkpoint)
    provenance.update({
        "converted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tools": tools, "seed": seed, "calibration": calibration, "evaluation": evaluation,
        "export_seconds": round(float(result.seconds), 2), "export_notes": list(result.notes),
    })
    provenance.update(extra_provenance or {})
    return Manifest(
        model={"name": source.model_name, "family": source.family or "unknown", "untrained": bool(source.untrained)},
        format=result.format, model_file=result.model_file, precision=result.precision, input=inp, output=out,
        keypoints=source.keypoints, decode=source.decode, devices=list(devices), blobs=dict(result.blobs),
        provenance=provenance,
    )

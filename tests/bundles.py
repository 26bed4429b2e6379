"""Small real bundles made from ../shared/models with the plain runtime APIs, for runtime, bench and serve tests.

These do not go through the converters on purpose: the runtime is tested on its own contract (the manifest).
"""
from __future__ import annotations

from pathlib import Path

from shared import CPM_TFLITE, SIMPLEBASELINE_ONNX, shared

from edge_pose.bundle import DecodeSpec, InputSpec, Manifest, OutputSpec, write_bundle
from edge_pose.keypoints import aic14, coco17

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def cpm_tflite_bundle(out: Path):
    """The shared CPM (14 AIC joints): NHWC float32, BGR 0..255, heatmaps 96x96 NHWC."""
    src = shared(*CPM_TFLITE)
    manifest = Manifest(
        model={"name": "cpm-mbv2-aic14", "family": "cpm", "untrained": False},
        format="tflite", model_file="model.tflite", precision="fp32",
        input=InputSpec(name="image", height=192, width=192, layout="NHWC", dtype="float32", color="bgr",
                        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), padding=1.0),
        output=OutputSpec(name="Convolutional_Pose_Machine/stage_5_out", heatmap_height=96, heatmap_width=96,
                          layout="NHWC"),
        keypoints=aic14(), decode=DecodeSpec(method="msra"),
        provenance={"source": str(src), "note": "test bundle made by tests/bundles.py"},
    )
    return write_bundle(out, manifest, {"model.tflite": src})


def simplebaseline_openvino_bundle(out: Path, tmp: Path):
    """The shared SimpleBaseline-family ONNX as OpenVINO IR FP32: NCHW, RGB, ImageNet mean/std."""
    import openvino as ov

    src = shared(*SIMPLEBASELINE_ONNX)
    model = ov.convert_model(str(src))
    tmp.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
    manifest = Manifest(
        model={"name": "simplebaseline-mbv2-ultralight", "family": "simplebaseline", "untrained": False},
        format="openvino", model_file="model.xml", precision="fp32",
        input=InputSpec(name=model.inputs[0].get_any_name(), height=256, width=192, layout="NCHW",
                        dtype="float32", color="rgb", mean=IMAGENET_MEAN, std=IMAGENET_STD),
        output=OutputSpec(name=model.outputs[0].get_any_name(), heatmap_height=64, heatmap_width=48,
                          layout="NCHW"),
        keypoints=coco17(), decode=DecodeSpec(method="msra"),
        provenance={"source": str(src), "note": "test bundle made by tests/bundles.py"},
    )
    return write_bundle(out, manifest, {"model.xml": tmp / "model.xml", "model.bin": tmp / "model.bin"})


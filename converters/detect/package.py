"""Bring-your-own detectors as bundles: an ONNX detector by its raw head (YOLOX, YOLOv8-style) or ending in NMS
(mmdeploy's dets/labels), or a ready .tflite / OpenVINO .xml detector packaged without conversion.

What the file cannot tell (the head, input size, normalisation, resize mode, strides, person class) comes from the
user, as for pose sources; the output tensor order is the model's own unless named. The ONNX source becomes an
`onnx` bundle (static batch-1, as given) and an OpenVINO IR read from the ONNX (never from a .tflite); each is run
by the runtime exactly as a device would and its boxes compared with the source's (ONNX Runtime on the original
file, the same decoder) on real frames, and with the ground truth's person boxes when a COCO file is given.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.errors import ConversionError
from edge_pose.bundle import InputSpec, Manifest, write_bundle

READY = {".tflite": "tflite", ".xml": "openvino", ".onnx": "onnx"}


def _outputs(path: Path, kind: str) -> tuple[str, tuple[int, ...], list[str]]:
    """(input name, input shape, output names in the model's order) of a detector file."""
    if kind == "onnx":
        import onnx

        m = onnx.load(str(path))
        inits = {i.name for i in m.graph.initializer}
        inp = [i for i in m.graph.input if i.name not in inits][0]
        shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)
        return inp.name, shape, [o.name for o in m.graph.output]
    if kind == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        d = it.get_input_details()[0]
        return d["name"], tuple(int(v) for v in d["shape"]), [o["name"] for o in it.get_output_details()]
    import openvino as ov

    m = ov.Core().read_model(str(path))
    return (m.inputs[0].get_any_name(), tuple(m.inputs[0].get_partial_shape().get_min_shape()),
            [o.get_any_name() for o in m.outputs])


def detector_spec(facts: dict[str, Any], outputs: list[str], where: str) -> dict[str, Any]:
    """The Detector spec from the user's facts, checked by edge_pose.detect.spec (one line naming the key)."""
    from edge_pose.detect.spec import DetectSpec, DetectSpecError

    if not facts.get("head"):
        raise ConversionError(f"{where}: say which head the detector has: --head yolox|yolov8|end2end")
    if not facts.get("input_size"):
        raise ConversionError(f"{where}: --input-size H,W is needed (the model's input)")
    spec = {k: v for k, v in facts.items() if v is not None}
    spec["outputs"] = list(facts.get("outputs") or outputs)
    try:
        DetectSpec.from_dict(spec, where)
    except DetectSpecError as exc:
        raise ConversionError(str(exc)) from None
    return spec


def _frames(calib) -> tuple[list[np.ndarray], dict | None, Path | None]:
    """Frames to judge on: a COCO JSON's images (with their ground truth) or an image folder's."""
    import cv2

    if calib is None:
        raise ConversionError("--task detect needs --calib (a COCO JSON or an image folder): frames to judge on")
    calib = Path(calib)
    if calib.is_dir():
        from edge_pose.media import list_images, read_image

        return [read_image(p) for p in list_images(calib)][:32], None, calib
    from calibration.detect_fidelity import load_gt

    gt = load_gt(calib)
    frames = [cv2.imread(str(calib.parent / Path(im["file_name"]).name)) for im in gt["images"]]
    if any(f is None for f in frames):
        raise ConversionError(f"{calib.parent}: an image {calib} lists is missing")
    return frames, gt, calib.parent


def package_detector(model_path, out_dir, facts: dict[str, Any], *, formats=(), calib=None,
                     log: Callable[[str], None] = print) -> list:
    """Bundles of a bring-your-own detector: the file's own format (packaged), and OpenVINO FP32 from an ONNX."""
    from calibration.detect_fidelity import box_agreement, person_box_ap, run_on_images
    from converters.manifest_build import tool_versions
    from edge_pose.bundle import sha256_file
    from edge_pose.detect.bundle import open_detector
    from edge_pose.detect.detector import Detector
    from registry import FORMATS

    model_path = Path(model_path)
    kind = READY.get(model_path.suffix.lower())
    if kind is None:
        raise ConversionError(f"{model_path}: a bring-your-own detector is an .onnx, .tflite or OpenVINO .xml file")
    in_name, in_shape, outputs = _outputs(model_path, kind)
    spec = detector_spec(facts, outputs, str(model_path))
    h, w = spec["input_size"]
    layout = spec.get("layout", "NHWC")
    want = (1, 3, h, w) if layout == "NCHW" else (1, h, w, 3)
    if tuple(in_shape) != want:
        raise ConversionError(f"{model_path}: input {in_name} has shape {list(in_shape)}, --input-size and --layout "
                              f"say {list(want)} (a detector bundle is static batch 1)")
    targets = [f.lower() for f in formats] or ([kind, "openvino"] if kind == "onnx" else [kind])
    for t in targets:
        if t not in ("onnx", "openvino", "tflite") or (t != kind and not (kind == "onnx" and t == "openvino")):
            raise ConversionError(f"{model_path}: a {kind} detector packages as {kind}"
                                  + (" or converts to openvino" if kind == "onnx" else "") + f", not {t}")
    frames, gt, image_dir = _frames(calib)
    source = None
    if kind == "onnx":
        from converters.detect.sessions import OnnxSession

        source = Detector(OnnxSession(model_path, spec["outputs"]), spec)
    work = Path(tempfile.mkdtemp(prefix="edge-pose-byo-detect-"))
    done = []
    try:
        for fmt in targets:
            exp = work / fmt
            exp.mkdir()
            precision = "fp32"
            if fmt == kind:
                files = {FORMATS[fmt].model_file: model_path}
                if fmt == "openvino":
                    files["model.bin"] = model_path.with_suffix(".bin")
                note = f"packaged as given ({model_path.name}), not converted"
                if kind != "onnx":  # a ready int8 or fp16 file says so in its tensors
                    from converters.sources.ready import file_precision

                    precision = file_precision(model_path, kind)
            else:  # ONNX -> OpenVINO IR, read from the ONNX itself
                import openvino as ov

                ov.save_model(ov.convert_model(str(model_path)), str(exp / "model.xml"), compress_to_fp16=False)
                files = {"model.xml": exp / "model.xml", "model.bin": exp / "model.bin"}
                note = f"OpenVINO IR read from {model_path.name}"
            manifest = Manifest(
                model={"name": facts.get("name") or model_path.stem, "family": spec["head"], "untrained": False},
                format=fmt, model_file=FORMATS[fmt].model_file, precision=precision,
                input=InputSpec(name=in_name, height=h, width=w, layout=layout, dtype="float32",
                                color=spec.get("color", "rgb"), mean=tuple(spec.get("mean", (0, 0, 0))),
                                std=tuple(spec.get("std", (1, 1, 1)))),
                output=None, keypoints=None, task="detect", detect=spec,
                provenance={"source": str(model_path), "source_kind": kind, "source_sha256": sha256_file(model_path),
                            "tools": tool_versions(), "export_notes": [note]})
            staged = write_bundle(exp / "bundle", manifest, files)
            det = open_detector(staged.path, backend=FORMATS[fmt].backend, accelerator=FORMATS[fmt].accelerator,
                                allow_degraded=True, records=False)
            got = {i: det.detect(f) for i, f in enumerate(frames)}
            fig: dict[str, Any] = {"frames": len(frames)}
            if source is not None:
                ref = {i: source.detect(f) for i, f in enumerate(frames)}
                fig.update(box_agreement(ref, got))
            if gt is not None:
                fig.update(person_box_ap(gt, run_on_images(det.detect, gt, image_dir)))
            agree = fig.get("matched_fraction", 1.0)
            passed = source is None or agree >= 0.99
            m = staged.manifest
            # a ready file with no source to compare with was run, not judged: it says so, as packaged pose files do
            m.fidelity = {**fig, "passed": passed if source is not None else None, "degraded": not passed,
                          "judged": source is not None,
                          "reference": "source (ONNX Runtime, same decoder)" if source is not None else
                          "none (a packaged file has no other source)"}
            if not passed:
                raise ConversionError(f"{fmt}: boxes agree with the source on only {agree:.0%} of its boxes")
            name = f"{m.model['name']}-{fmt}-{precision}"
            bundle = write_bundle(Path(out_dir) / name, m, {n: staged.path / n for n in m.files})
            log(f"  {fmt}: wrote {bundle.path} ({note}; " + ", ".join(f"{k} {v:.3g}" for k, v in fig.items()
                                                                   if isinstance(v, float)) + ")")
            done.append(bundle)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done

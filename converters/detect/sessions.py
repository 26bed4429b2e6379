"""Detector sessions over real runtimes for workstation-side validation (the runtime bundles get the lead's
backends): run(batch) -> [outputs in the order asked], as edge_pose.detect.Detector takes them."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


class LiteRTSession:
    def __init__(self, model_path, outputs: Sequence[str], threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        by_name = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        missing = [o for o in outputs if o not in by_name]
        if missing:
            raise ValueError(f"{model_path}: no output(s) {missing} (has {sorted(by_name)})")
        self._outs = [by_name[o] for o in outputs]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self._in, np.ascontiguousarray(batch, np.float32))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i).copy() for i in self._outs]


class OpenVINOSession:
    """CPU with INFERENCE_PRECISION_HINT f32: without it a bf16-capable CPU runs an "FP32" IR in bf16."""

    def __init__(self, xml, outputs: Sequence[str], threads: int = 2, precision_hint: str = "f32"):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        self.compiled = core.compile_model(str(Path(xml)), "CPU", config)
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self._outs = []
        for name in outputs:
            port = next((o for o in self.compiled.outputs if name in o.get_names()), None)
            if port is None:
                raise ValueError(f"{xml}: no output {name!r}")
            self._outs.append(port)
        self._request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self._request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return [self._request.get_tensor(o).data.copy() for o in self._outs]


class OnnxSession:
    """ONNX Runtime on the CPU: the reference a bring-your-own ONNX detector's bundles are judged against."""

    def __init__(self, model_path, outputs: Sequence[str], threads: int = 2):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        self._in = self.session.get_inputs()[0].name
        self._outs = list(outputs)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self._outs, {self._in: np.ascontiguousarray(batch, np.float32)})

"""ONNX Runtime adapter: TensorRT, CUDA or CPU execution providers; onnxruntime is imported only in `load`.

ONNX Runtime falls back from TensorRT to CUDA to CPU without an error when a provider cannot be created (missing
libraries, an unsupported GPU, a CPU-only wheel), so users believe they run on the GPU when they do not. Each
candidate therefore asks for one accelerator, the providers in effect are read back from the session after it is
created, and a requested provider that did not take is refused (a skipped candidate with the reason), never run.

Precision as validated: TensorRT builds fp16 engines only for bundles validated at f16, int8 (explicit QDQ) only
for int8 bundles; CUDA's TF32 matmuls are off for f32 bundles. TensorRT's engine and timing caches live in the cache
directory, so the second start of the same bundle skips the engine build.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from edge_pose.backends.base import BackendUnavailable, ProviderFellBack, check_execution, default_cache_dir
from edge_pose.backends.imports import installed, one_line
from edge_pose.backends.tensors import check_tensor, detect_outputs, input_shape, output_shape, run_batch1, run_batched
from edge_pose.bundle import Bundle, BundleError

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def provider_chain(accelerator: str, bundle: Bundle, cache_dir) -> list[tuple[str, dict[str, str]]]:
    """The providers to register, in priority order, with their options, for one requested accelerator.

    TensorRT gets CUDA behind it (ONNX Runtime's recommendation: nodes TensorRT does not take run on CUDA), and every
    chain ends with the CPU provider, which ONNX Runtime always keeps for nodes no one else takes.
    """
    m = bundle.manifest
    chain: list[tuple[str, dict[str, str]]] = []
    if accelerator == "tensorrt":
        cache = str(cache_dir)
        chain.append((PROVIDERS["tensorrt"], {
            "trt_fp16_enable": "1" if m.execution_precision == "f16" else "0",
            "trt_int8_enable": "1" if m.precision == "int8" else "0",
            "trt_engine_cache_enable": "1", "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": "1", "trt_timing_cache_path": cache}))
    if accelerator in ("tensorrt", "cuda"):
        chain.append((PROVIDERS["cuda"], {"use_tf32": "0" if m.execution_precision == "f32" else "1"}))
    chain.append((PROVIDERS["cpu"], {}))
    return chain


def check_in_effect(accelerator: str, in_effect: list[str]) -> None:
    """The session must run on the provider asked for: a silent fallback is refused."""
    wanted = PROVIDERS[accelerator]
    if not in_effect or in_effect[0] != wanted:
        raise ProviderFellBack(f"{wanted} did not take: the session runs on {', '.join(in_effect) or 'nothing'} "
                                 "(ONNX Runtime fell back silently)")


class OnnxRuntimeSession:
    def __init__(self, bundle: Bundle, session, accelerator: str, threads: int | None, providers: list[str],
                 execution: str):
        self.bundle, self.session, self._accelerator, self._threads = bundle, session, accelerator, threads
        self._providers, self._execution = providers, execution
        m = bundle.manifest
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise BundleError(f"{bundle.model_path}: model has {len(inputs)} inputs, a {m.task} model has one")
        if m.task == "detect":
            inp = inputs[0]
            check_tensor(bundle, "input", inp.shape, _DTYPES.get(inp.type, inp.type), input_shape(m), m.input.dtype)
            self._in, self._outs = inp.name, detect_outputs(bundle, [o.name for o in outputs])
            return
        out = next((o for o in outputs if o.name == m.output.name), outputs[0] if len(outputs) == 1 else None)
        if out is None:
            raise BundleError(f"{bundle.model_path}: no output named {m.output.name!r} "
                              f"(outputs: {[o.name for o in outputs]})")
        inp = inputs[0]
        check_tensor(bundle, "input", inp.shape, _DTYPES.get(inp.type, inp.type), input_shape(m), m.input.dtype)
        check_tensor(bundle, "output", out.shape, _DTYPES.get(out.type, out.type), output_shape(m), m.output.dtype)
        self._in, self._out = inp.name, out.name

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self._out], {self._in: x})[0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return run_batched(self._run_one, batch, self.bundle.manifest, str(self.bundle.model_path))

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """A detect bundle's raw outputs for one frame, in its detect spec's order."""
        return run_batch1(lambda x: self.session.run(self._outs, {self._in: x}), batch, self.bundle.manifest,
                          str(self.bundle.model_path))

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": "onnxruntime", "runtime": f"onnxruntime {ort.__version__}",
                "accelerator": self._accelerator, "providers": self._providers,
                "execution_precision": self._execution,
                "validated_precision": self.bundle.manifest.execution_precision,
                "threads": self._threads, "precision": self.bundle.manifest.precision,
                "model": str(self.bundle.model_path)}


class OnnxRuntimeBackend:
    name = "onnxruntime"
    formats = ("onnx",)
    accelerators = tuple(PROVIDERS)

    def available(self) -> str | None:
        if not installed("onnxruntime"):
            return "onnxruntime not installed (pip install onnxruntime; onnxruntime-gpu or the JetPack wheel on Jetson)"
        return None

    def accelerator_absent(self, accelerator: str, options: dict[str, Any]) -> str | None:
        """Why this accelerator cannot be here, from the build's provider list (cheap: no session)."""
        import onnxruntime as ort

        wanted = PROVIDERS.get(accelerator)
        if wanted is None:
            return f"onnxruntime has no accelerator {accelerator!r} (use one of {', '.join(PROVIDERS)})"
        have = ort.get_available_providers()
        if wanted not in have:
            return f"{wanted} not available in this onnxruntime build (available: {', '.join(have)})"
        return None

    def load(self, bundle: Bundle, accelerator: str = "cpu", options: dict[str, Any] | None = None
             ) -> OnnxRuntimeSession:
        """options: threads (CPU intra-op threads), cache_dir (TensorRT engines), allow_precision."""
        options = dict(options or {})
        if bundle.manifest.format not in self.formats:
            raise BackendUnavailable(f"onnxruntime cannot load {bundle.manifest.format} bundles")
        if self.available():
            raise BackendUnavailable(self.available())
        absent = self.accelerator_absent(accelerator, options)
        if absent:
            raise BackendUnavailable(absent)
        import onnxruntime as ort

        # the CPU and CUDA providers compute as the graph declares (fp16 nodes in fp16, the rest f32) and TensorRT
        # builds at what the options above ask for; an ONNX graph has no bf16 mode here
        declared = bundle.manifest.execution_precision
        execution = declared if declared in ("f32", "f16") else "f32"
        check_execution(bundle, execution, options, f"onnxruntime {accelerator}")
        cache = options.get("cache_dir") or default_cache_dir("tensorrt")
        chain = provider_chain(accelerator, bundle, cache)
        if accelerator == "tensorrt":
            from pathlib import Path

            Path(cache).mkdir(parents=True, exist_ok=True)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # the fallback warning is not how a user learns of it: the read-back below is
        threads = options.get("threads")
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        try:
            with warnings.catch_warnings():  # its "not in available provider names" warning: the read-back says it
                warnings.simplefilter("ignore")
                session = ort.InferenceSession(str(bundle.model_path), so, providers=[p for p, _ in chain],
                                               provider_options=[o for _, o in chain])
        except Exception as exc:  # noqa: BLE001 - a corrupt file or an op the build lacks: one line
            text = one_line(exc, last=True)
            if "provider" in text.lower():
                raise BackendUnavailable(f"onnxruntime {accelerator}: {text}") from None
            raise BundleError(f"{bundle.model_path}: ONNX Runtime cannot load it ({text})") from None
        in_effect = list(session.get_providers())
        check_in_effect(accelerator, in_effect)
        return OnnxRuntimeSession(bundle, session, accelerator, threads, in_effect, execution)

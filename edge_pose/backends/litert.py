"""LiteRT (TensorFlow Lite) adapter: ai_edge_litert, else tflite_runtime, else tf.lite, imported only in `load`.

Accelerators: "cpu" (the built-in kernels with XNNPACK, which ai_edge_litert applies by default), "gpu" (the GPU
delegate library, found on disk or given by path) and "delegate" (any external delegate by library path with its
options). A delegate that cannot be loaded raises BackendUnavailable so the selector falls back and says why.

Execution precision: XNNPACK and the built-in kernels compute float models in f32 (fp16 weights are dequantised)
unless the model carries the `reduced_precision_support` metadata, which lets XNNPACK switch to fp16 arithmetic on
CPUs that have it. Such a model is refused for an f32-validated bundle unless f16 is allowed. What a GPU or external
delegate computes in is the delegate's own choice, which LiteRT does not report; describe() says so.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import platform
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from devices.delegates import find_delegate
from edge_pose.backends.base import BackendUnavailable, check_execution
from edge_pose.backends.imports import installed, one_line
from edge_pose.backends.tensors import (check_quantization, check_tensor, detect_outputs, input_shape, output_shape,
                                       run_batch1, run_batched)
from edge_pose.bundle import Bundle, BundleError

# (module to import, attribute holding Interpreter/load_delegate, name shown to users)
RUNTIMES = (("ai_edge_litert.interpreter", None, "ai_edge_litert"),
            ("tflite_runtime.interpreter", None, "tflite_runtime"),
            ("tensorflow", "lite", "tf.lite"))


def _runtime() -> SimpleNamespace:
    """The first LiteRT runtime that imports: Interpreter, load_delegate, OpResolverType (or None), label."""
    errors = []
    for module, attr, label in RUNTIMES:
        if not installed(module):
            continue
        try:
            mod = importlib.import_module(module)
            mod = getattr(mod, attr) if attr else mod
            load_delegate = mod.experimental.load_delegate if attr else mod.load_delegate
            return SimpleNamespace(Interpreter=mod.Interpreter, load_delegate=load_delegate,
                                   OpResolverType=getattr(mod, "OpResolverType", None), label=label)
        except Exception as exc:  # noqa: BLE001 - a broken runtime install is one reason among several
            errors.append(f"{label}: {type(exc).__name__}: {one_line(exc)}")
    raise BackendUnavailable("no LiteRT runtime (pip install ai-edge-litert)" +
                             (f"; {'; '.join(errors)}" if errors else ""))


def _version(label: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "tf.lite": "tensorflow-cpu"}
    for name in (dist[label], "tensorflow"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "?"


REDUCED_PRECISION_KEY = b"reduced_precision_support"  # the TFLite metadata name XNNPACK reads


def cpu_execution(model_path: Path) -> str:
    """What the CPU kernels compute this model in: f32, or f16 when the model allows XNNPACK reduced precision."""
    with open(model_path, "rb") as f:
        data = f.read()
    return "f16" if REDUCED_PRECISION_KEY in data else "f32"


class LiteRTSession:
    def __init__(self, bundle: Bundle, interpreter, runtime: str, accelerator: str, threads: int | None,
                 delegate: str | None, xnnpack: bool, execution: str):
        self.bundle, self.interpreter, self._execution = bundle, interpreter, execution
        self._runtime, self._accelerator, self._threads = runtime, accelerator, threads
        self._delegate, self._xnnpack = delegate, xnnpack
        m = bundle.manifest
        inp = interpreter.get_input_details()
        outs = interpreter.get_output_details()
        if len(inp) != 1:
            raise BundleError(f"{bundle.model_path}: model has {len(inp)} inputs, a {m.task} model has one")
        if m.task == "detect":
            inp = inp[0]
            check_tensor(bundle, "input", inp["shape"], np.dtype(inp["dtype"]).name, input_shape(m), m.input.dtype)
            by_name = {o["name"]: o["index"] for o in outs}
            self._in, self._outs = inp["index"], [by_name[n] for n in detect_outputs(bundle, list(by_name))]
            return
        out = next((o for o in outs if o["name"] == m.output.name), outs[0] if len(outs) == 1 else None)
        if out is None:
            raise BundleError(f"{bundle.model_path}: no output named {m.output.name!r} "
                              f"(outputs: {[o['name'] for o in outs]})")
        inp = inp[0]
        check_tensor(bundle, "input", inp["shape"], np.dtype(inp["dtype"]).name, input_shape(m), m.input.dtype)
        check_tensor(bundle, "output", out["shape"], np.dtype(out["dtype"]).name, output_shape(m), m.output.dtype)
        check_quantization(bundle, "input", m.input.quantization, m.input.dtype, inp["quantization"])
        check_quantization(bundle, "output", m.output.quantization, m.output.dtype, out["quantization"])
        self._in, self._out = inp["index"], out["index"]

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out).copy()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return run_batched(self._run_one, batch, self.bundle.manifest, str(self.bundle.model_path))

    def _run_all(self, x: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i).copy() for i in self._outs]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """A detect bundle's raw outputs for one frame, in its detect spec's order."""
        return run_batch1(self._run_all, batch, self.bundle.manifest, str(self.bundle.model_path))

    def describe(self) -> dict[str, Any]:
        """What runs, as the interpreter reports it: DELEGATE nodes in its execution plan are applied delegates."""
        try:
            ops = self.interpreter._get_ops_details()  # the only place the runtime exposes its node list
            partitions = sum(1 for op in ops if op.get("op_name") == "DELEGATE")
        except Exception:  # noqa: BLE001 - older runtimes lack it; say so rather than guess
            partitions = None
        delegate = self._delegate or ("xnnpack" if self._xnnpack else None)
        return {"backend": "litert", "runtime": f"{self._runtime} {_version(self._runtime)}",
                "accelerator": self._accelerator, "delegate": delegate, "delegate_partitions": partitions,
                "delegate_applied": bool(partitions) if partitions is not None else None,
                "threads": self._threads, "precision": self.bundle.manifest.precision,
                "execution_precision": self._execution,
                "validated_precision": self.bundle.manifest.execution_precision,
                "model": str(self.bundle.model_path)}


class LiteRTBackend:
    name = "litert"
    formats = ("tflite",)
    accelerators = ("cpu", "gpu", "delegate")

    def available(self) -> str | None:
        if any(installed(mod) for mod, _, _ in RUNTIMES):
            return None
        return "no LiteRT runtime installed (pip install ai-edge-litert)"

    def accelerator_absent(self, accelerator: str, options: dict[str, Any]) -> str | None:
        """Why this accelerator cannot be here (cheap, without loading), or None."""
        if accelerator == "gpu" and not options.get("delegate") and find_delegate("gpu") is None:
            return "GPU delegate library not found (give its path, or set EDGE_POSE_DELEGATE_PATH)"
        return None

    def load(self, bundle: Bundle, accelerator: str = "cpu", options: dict[str, Any] | None = None) -> LiteRTSession:
        """options: threads (None: all cores), delegate (library path or name), delegate_options, xnnpack (bool),
        allow_precision (execution precisions accepted in place of the bundle's)."""
        options = dict(options or {})
        if accelerator not in self.accelerators:
            raise BackendUnavailable(f"litert has no accelerator {accelerator!r} (use one of {self.accelerators})")
        if bundle.manifest.format not in self.formats:
            raise BackendUnavailable(f"litert cannot load {bundle.manifest.format} bundles")
        rt = _runtime()
        threads = options.get("threads") or os.cpu_count() or 1
        if accelerator == "cpu":
            execution = cpu_execution(bundle.model_path)
            if execution != "f32" and platform.machine().lower() in ("x86_64", "amd64"):
                execution = "f32"  # XNNPACK has no fp16 arithmetic on these CPUs: reduced precision stays f32
            check_execution(bundle, execution, options, "LiteRT on the CPU")
        else:
            execution = "delegate-defined (LiteRT does not report it)"
        delegates, lib = [], None
        if accelerator in ("gpu", "delegate"):
            wanted = options.get("delegate") or ("gpu" if accelerator == "gpu" else None)
            if not wanted:
                raise BackendUnavailable("accelerator 'delegate' needs a delegate library path (option 'delegate')")
            found = find_delegate(wanted)
            if found is None:
                what = "GPU delegate library" if wanted == "gpu" else f"delegate library {wanted!r}"
                raise BackendUnavailable(f"{what} not found (give its path, or set EDGE_POSE_DELEGATE_PATH)")
            lib = str(found)
            try:  # dlopen first: a library that cannot load never becomes a half-built runtime Delegate
                handle = ctypes.CDLL(lib)
            except OSError as exc:
                raise BackendUnavailable(f"{accelerator} delegate {Path(lib).name} failed to load: "
                                         f"{one_line(exc)}") from None
            if not hasattr(handle, "tflite_plugin_create_delegate"):
                raise BackendUnavailable(f"{accelerator} delegate {Path(lib).name} is not a LiteRT delegate "
                                         "(no tflite_plugin_create_delegate)")
            try:
                delegates.append(rt.load_delegate(lib, {k: str(v) for k, v in
                                                        options.get("delegate_options", {}).items()}))
            except (OSError, ValueError, RuntimeError, AttributeError) as exc:
                raise BackendUnavailable(f"{accelerator} delegate {Path(lib).name} failed to load: "
                                         f"{one_line(exc)}") from None
        xnnpack = options.get("xnnpack", True) and not delegates
        kwargs: dict[str, Any] = {"model_path": str(bundle.model_path), "num_threads": threads}
        if delegates:
            kwargs["experimental_delegates"] = delegates
        if not xnnpack and rt.OpResolverType is not None:
            kwargs["experimental_op_resolver_type"] = rt.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interpreter = rt.Interpreter(**kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            if delegates:
                raise BackendUnavailable(f"{accelerator} delegate {Path(lib).name} rejected the model: "
                                         f"{one_line(exc)}") from None
            text = re.sub(r"(?<=[a-z0-9.)])(?=Node number \d+)", "; ", one_line(exc))  # messages run together
            if xnnpack and "XNNPACK" in text:  # the delegate refused the model, not the runtime: say which
                raise BackendUnavailable(f"XNNPACK refused {bundle.model_path}: {text}") from None
            raise BundleError(f"{bundle.model_path}: LiteRT cannot load it ({text})") from None
        return LiteRTSession(bundle, interpreter, rt.label, accelerator, threads, lib, xnnpack, execution)

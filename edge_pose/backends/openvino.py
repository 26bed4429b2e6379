"""OpenVINO adapter: CPU, GPU, NPU or AUTO with explicit priorities; openvino is imported only in `load`.

AUTO's default priority list leaves the NPU out, so plain "AUTO" is expanded to the devices present minus the NPU,
and "AUTO:NPU,GPU,CPU" keeps the order given (dropping devices that are absent). Every compile uses the LATENCY
hint, the bundle's execution precision as INFERENCE_PRECISION_HINT (the CPU plugin otherwise picks bf16 on CPUs
with native bf16, so an "fp32" bundle would silently run in bf16), read back after compiling and refused when the
device computes otherwise, and a model cache dir (NPU compiles ahead of time: the cache, or a precompiled blob from the manifest's
`blobs`, keeps the second start fast). Models with a dynamic shape are reshaped to the manifest's static batch-1
shape, which the NPU needs.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from edge_pose.backends.base import BackendUnavailable, check_execution, check_threads
from edge_pose.backends.base import default_cache_dir as base_cache_dir
from edge_pose.backends.imports import installed, one_line
from edge_pose.backends.tensors import check_tensor, detect_outputs, input_shape, output_shape, run_batch1, run_batched
from edge_pose.bundle import Bundle, BundleError

def default_cache_dir() -> Path:
    return base_cache_dir("openvino")


@functools.lru_cache(maxsize=1)
def _core():
    import openvino as ov

    return ov.Core()


def _base(device: str) -> str:
    return device.split(".")[0]


def resolve_device(accelerator: str, available: list[str]) -> str:
    """The device string to compile for, or BackendUnavailable saying what is missing."""
    present = {_base(d) for d in available} | set(available)
    if accelerator == "AUTO" or accelerator.startswith("AUTO:"):
        asked = accelerator[5:].split(",") if ":" in accelerator else [d for d in ("GPU", "CPU") if d in present]
        kept = [d for d in asked if d in present]
        if not kept:
            raise BackendUnavailable(f"none of {accelerator} is available (OpenVINO devices: {', '.join(available)})")
        return "AUTO:" + ",".join(kept)
    if accelerator not in present:
        raise BackendUnavailable(f"{accelerator} not available (OpenVINO devices: {', '.join(available) or 'none'})")
    return accelerator


# OpenVINO's element type names -> the registry's execution precisions
_EXECUTION = {"f32": "f32", "f16": "f16", "bf16": "bf16"}


def execution_precision(compiled) -> str | None:
    """The inference precision the compiled model really uses, or None where the device does not report it."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except Exception:  # noqa: BLE001 - AUTO and some plugins do not report it
        return None
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return _EXECUTION.get(name, name)


def _dtype(port) -> str:
    return np.dtype(port.get_element_type().to_dtype()).name


class OpenVINOSession:
    def __init__(self, bundle: Bundle, compiled, device: str, source: str, config: dict[str, Any]):
        self.bundle, self.compiled, self._device, self._source, self._config = bundle, compiled, device, source, config
        m = bundle.manifest
        if len(compiled.inputs) != 1:
            raise BundleError(f"{bundle.model_path}: model has {len(compiled.inputs)} inputs, a {m.task} model has one")
        outs = compiled.outputs
        if m.task == "detect":
            inp = compiled.inputs[0]
            check_tensor(bundle, "input", inp.get_shape(), _dtype(inp), input_shape(m), m.input.dtype)
            by_name = {name: o for o in outs for name in o.get_names()}
            self._outs = [by_name[n] for n in detect_outputs(bundle, list(by_name))]
            self._request = compiled.create_infer_request()
            return
        out = next((o for o in outs if m.output.name in o.get_names()), outs[0] if len(outs) == 1 else None)
        if out is None:
            raise BundleError(f"{bundle.model_path}: no output named {m.output.name!r} "
                              f"(outputs: {[o.get_any_name() for o in outs]})")
        inp = compiled.inputs[0]
        check_tensor(bundle, "input", inp.get_shape(), _dtype(inp), input_shape(m), m.input.dtype)
        check_tensor(bundle, "output", out.get_shape(), _dtype(out), output_shape(m), m.output.dtype)
        self._out = out
        self._request = compiled.create_infer_request()

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        self._request.infer({0: x})
        return self._request.get_tensor(self._out).data.copy()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return run_batched(self._run_one, batch, self.bundle.manifest, str(self.bundle.model_path))

    def _run_all(self, x: np.ndarray) -> list[np.ndarray]:
        self._request.infer({0: x})
        return [self._request.get_tensor(o).data.copy() for o in self._outs]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """A detect bundle's raw outputs for one frame, in its detect spec's order."""
        return run_batch1(self._run_all, batch, self.bundle.manifest, str(self.bundle.model_path))

    def _prop(self, name: str):
        try:
            value = self.compiled.get_property(name)
        except Exception:  # noqa: BLE001 - not every device (AUTO) reports every property
            return None
        if hasattr(value, "get_type_name"):  # an element type: report "f32", "f16", "bf16"
            return value.get_type_name()
        if hasattr(value, "name") and not isinstance(value, (str, list)):  # an enum such as PerformanceMode
            return value.name
        return value if isinstance(value, (int, float, str, list, bool)) else str(value)

    def describe(self) -> dict[str, Any]:
        from openvino import __version__

        actual = execution_precision(self.compiled)
        return {"backend": "openvino", "runtime": f"openvino {__version__.split('-')[0]}",
                "accelerator": self._device, "execution_devices": self._prop("EXECUTION_DEVICES"),
                "execution_precision": actual or f"{self._config.get('INFERENCE_PRECISION_HINT')} (asked; "
                                                 f"{self._device} does not report it)",
                "validated_precision": self.bundle.manifest.execution_precision,
                "threads": self._prop("INFERENCE_NUM_THREADS"), "performance_hint": self._prop("PERFORMANCE_HINT"),
                "cache_dir": self._config.get("CACHE_DIR"), "source": self._source,
                "precision": self.bundle.manifest.precision, "model": str(self.bundle.model_path)}


class OpenVINOBackend:
    name = "openvino"
    formats = ("openvino", "onnx")

    def available(self) -> str | None:
        if not installed("openvino"):
            return "openvino not installed (pip install openvino)"
        return None

    def devices(self) -> list[str]:
        return list(_core().available_devices)

    def accelerator_absent(self, accelerator: str, options: dict[str, Any]) -> str | None:
        try:
            resolve_device(accelerator, self.devices())
        except BackendUnavailable as exc:
            return str(exc)
        return None

    def load(self, bundle: Bundle, accelerator: str = "CPU", options: dict[str, Any] | None = None
             ) -> OpenVINOSession:
        """options: threads (CPU only), cache_dir (False to disable), config (extra compile properties),
        allow_precision (execution precisions accepted in place of the bundle's)."""
        options = dict(options or {})
        if bundle.manifest.format not in self.formats:
            raise BackendUnavailable(f"openvino cannot load {bundle.manifest.format} bundles")
        if self.available():
            raise BackendUnavailable(self.available())
        core = _core()
        device = resolve_device(accelerator, list(core.available_devices))
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_PRECISION_HINT": bundle.manifest.execution_precision}
        cache = options.get("cache_dir", None)
        if cache is not False:
            cache = Path(cache) if cache else default_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache)
        if options.get("threads") and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(options["threads"])
        config.update(options.get("config", {}))
        compiled, source = None, f"IR {bundle.manifest.model_file}"
        blob = bundle.manifest.blobs.get(device)
        if blob:
            try:
                compiled = core.import_model(bundle.file(blob).read_bytes(), device, config)
                source = f"blob {blob}"
            except Exception as exc:  # noqa: BLE001 - a stale blob (other driver) falls back to compiling
                why = one_line(exc, last=True)
                source = f"IR {bundle.manifest.model_file} (blob {blob} not importable: {why})"
        if compiled is None:
            compiled = self._compile(core, bundle, device, config)
        check_execution(bundle, execution_precision(compiled), options, f"OpenVINO {device}")
        if device == "CPU":
            check_threads(options.get("threads"), self._threads(compiled), f"OpenVINO {device}")
        return OpenVINOSession(bundle, compiled, device, source, config)

    @staticmethod
    def _threads(compiled) -> int | None:
        try:
            return int(compiled.get_property("INFERENCE_NUM_THREADS"))
        except Exception:  # noqa: BLE001
            return None

    def _compile(self, core, bundle: Bundle, device: str, config: dict[str, Any]):
        try:
            model = core.read_model(str(bundle.model_path))
        except Exception as exc:  # noqa: BLE001 - corrupt or foreign file: one line, no C++ trace
            raise BundleError(f"{bundle.model_path}: OpenVINO cannot read it ({one_line(exc, last=True)})") from None
        if len(model.inputs) != 1:
            raise BundleError(f"{bundle.model_path}: model has {len(model.inputs)} inputs, a "
                              f"{bundle.manifest.task} model has one")
        shape = model.inputs[0].get_partial_shape()
        want = input_shape(bundle.manifest)
        if shape.is_dynamic:
            try:  # static batch-1 shapes: the NPU needs them and every device runs faster with them
                model.reshape(list(want))
            except Exception as exc:  # noqa: BLE001
                raise BundleError(f"{bundle.model_path}: cannot reshape input {shape} to the manifest's {want} "
                                  f"({one_line(exc, last=True)})") from None
        else:  # refuse a mismatch before paying for a compile
            check_tensor(bundle, "input", shape.to_shape(), _dtype(model.inputs[0]), want, bundle.manifest.input.dtype)
        try:
            return core.compile_model(model, device, config)
        except Exception as exc:  # noqa: BLE001 - plugin missing or device refuses: fall back with the reason
            raise BackendUnavailable(f"{device} could not compile the model: {one_line(exc, last=True)}") from None

"""What the manifest says the model's tensors are, checks against what the runtime says, and output conversion.

Shared by every adapter so that all of them refuse the same mismatches with the same words and return heatmaps
the same way: (N, K, H, W) float32, dequantised with the manifest's quantisation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edge_pose.bundle import Bundle, BundleError, Manifest, Quantization

DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8, "int16": np.int16}


def input_shape(m: Manifest) -> tuple[int, int, int, int]:
    h, w = m.input.size
    return (1, h, w, 3) if m.input.layout == "NHWC" else (1, 3, h, w)


def output_shape(m: Manifest) -> tuple[int, int, int, int]:
    h, w = m.output.size
    k = len(m.keypoints.names)
    return (1, h, w, k) if m.output.layout == "NHWC" else (1, k, h, w)


def check_tensor(bundle: Bundle, what: str, shape: Sequence[int], dtype: str, expect_shape: Sequence[int],
                 expect_dtype: str) -> None:
    """Refuse a model whose tensor disagrees with the manifest: one line naming the model file."""
    shape, expect_shape = tuple(int(s) for s in shape), tuple(expect_shape)
    problems = []
    if shape != expect_shape:
        problems.append(f"shape {shape} but the manifest says {expect_shape}")
    if dtype != expect_dtype:
        problems.append(f"dtype {dtype} but the manifest says {expect_dtype}")
    if problems:
        raise BundleError(f"{bundle.model_path}: model {what} has " + " and ".join(problems))


def check_quantization(bundle: Bundle, what: str, spec_q: Quantization | None, dtype: str,
                       model_q: tuple[float, int] | None) -> None:
    """An integer tensor needs the manifest's scale/zero point, and it must be the model's own when known."""
    if dtype.startswith(("int", "uint")):
        if spec_q is None:
            raise BundleError(f"{bundle.path / 'edge_pose.json'}: {what} is {dtype} but has no quantization")
        if model_q and model_q[0] and (not np.isclose(spec_q.scale, model_q[0], rtol=1e-5)
                                       or spec_q.zero_point != model_q[1]):
            raise BundleError(f"{bundle.model_path}: model {what} quantization (scale {model_q[0]:.6g}, zero point "
                              f"{model_q[1]}) differs from the manifest's ({spec_q.scale:.6g}, {spec_q.zero_point})")


def to_heatmaps(raw: np.ndarray, m: Manifest) -> np.ndarray:
    """One model output (1 or N, ...) -> (N, K, H, W) float32."""
    q = m.output.quantization
    out = raw.astype(np.float32)
    if q is not None and np.issubdtype(raw.dtype, np.integer):
        out = (out - np.float32(q.zero_point)) * np.float32(q.scale)
    if m.output.layout == "NHWC":
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


def check_batch(batch: np.ndarray, m: Manifest, where: str) -> np.ndarray:
    """The batch as the model takes it (N, ...) in the manifest's layout and dtype, or one line saying why not."""
    expect = input_shape(m)[1:]
    batch = np.ascontiguousarray(batch)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[1:] != expect:
        raise BundleError(f"{where}: input batch of shape {batch.shape}, the model takes (N, *{expect})")
    want = DTYPES[m.input.dtype]
    if batch.dtype != want:
        raise BundleError(f"{where}: input batch is {batch.dtype}, the model takes {m.input.dtype}")
    return batch


def detect_outputs(bundle: Bundle, available: Sequence[str]) -> list[str]:
    """A detect bundle's output tensors, in the order its detect spec names them; each must exist in the model."""
    names = list(bundle.manifest.detect.get("outputs", []))
    missing = [n for n in names if n not in available]
    if missing or not names:
        raise BundleError(f"{bundle.model_path}: no output(s) {missing or names} as the manifest's detect.outputs "
                          f"say (the model has {sorted(available)})")
    return names


def run_batch1(run_one: Callable[[np.ndarray], list], batch: np.ndarray, m: Manifest, where: str) -> list:
    """A detect model's raw outputs for one frame (detectors take one frame at a time)."""
    batch = check_batch(batch, m, where)
    if len(batch) != 1:
        raise BundleError(f"{where}: a detector takes one frame at a time, got a batch of {len(batch)}")
    return run_one(batch)


def run_batched(run_one: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, m: Manifest,
                where: str) -> np.ndarray:
    """Models are static batch-1: check the batch and run it one sample at a time."""
    batch = check_batch(batch, m, where)
    if len(batch) == 0:
        return to_heatmaps(np.zeros((0,) + output_shape(m)[1:], np.float32), m)
    return np.concatenate([to_heatmaps(run_one(batch[i:i + 1]), m) for i in range(len(batch))])

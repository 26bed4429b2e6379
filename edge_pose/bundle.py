"""The bundle: a directory with model file(s) and one manifest, `edge_pose.json`.

The manifest is the only contract between the converters (which write it) and the runtime (which reads it).
It holds everything the runtime needs and nothing it must guess. Sizes are (height, width) throughout.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_pose.errors import EdgePoseError

SCHEMA = "edge-pose/bundle@1"
MANIFEST = "edge_pose.json"
FORMATS = ("tflite", "openvino", "onnx")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
LAYOUTS = ("NHWC", "NCHW")
DECODE_METHODS = ("msra", "dark", "udp")


class BundleError(EdgePoseError, ValueError):
    """A bundle that cannot be used: the message is one line naming the file and what is wrong."""


@dataclass
class Quantization:
    """Affine quantisation of an integer tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass
class InputSpec:
    name: str
    height: int
    width: int
    layout: str = "NHWC"  # of the model's input tensor
    dtype: str = "float32"  # float32 | float16 | int8 | uint8
    color: str = "rgb"  # channel order the model expects
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # 0..255 units, in `color` order
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    quantization: Quantization | None = None  # for integer inputs: applied after (x - mean) / std
    padding: float = 1.25  # person box enlargement before the crop, as the model was trained (mmpose: 1.25)

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)


@dataclass
class OutputSpec:
    name: str
    heatmap_height: int
    heatmap_width: int
    layout: str = "NHWC"  # of the model's output tensor
    dtype: str = "float32"
    quantization: Quantization | None = None

    @property
    def size(self) -> tuple[int, int]:
        return (self.heatmap_height, self.heatmap_width)


@dataclass
class KeypointSpec:
    names: list[str]
    skeleton: list[tuple[int, int]] = field(default_factory=list)
    flip_pairs: list[tuple[int, int]] = field(default_factory=list)
    sigmas: list[float] = field(default_factory=list)  # OKS sigmas; empty when unknown

    @property
    def flip_indices(self) -> list[int]:
        idx = list(range(len(self.names)))
        for a, b in self.flip_pairs:
            idx[a], idx[b] = b, a
        return idx


@dataclass
class DecodeSpec:
    method: str = "msra"
    blur_kernel: int = 11
    flip_test: bool = False


@dataclass
class Manifest:
    model: dict[str, Any]  # name, family, untrained flag, parameters
    format: str
    model_file: str  # the file the runtime loads (model.tflite, model.xml or model.onnx)
    precision: str
    input: InputSpec
    output: OutputSpec
    keypoints: KeypointSpec
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    devices: list[str] = field(default_factory=list)  # profiles this bundle was built for
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    blobs: dict[str, str] = field(default_factory=dict)  # OpenVINO device -> precompiled blob file name
    provenance: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    @property
    def stride(self) -> float:
        return self.input.height / self.output.heatmap_height

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = MANIFEST) -> "Manifest":
        try:
            if data.get("schema") != SCHEMA:
                raise BundleError(f"{where}: schema {data.get('schema')!r} is not {SCHEMA!r}")
            d = dict(data)
            inp = dict(d.pop("input"))
            if inp.get("quantization"):
                inp["quantization"] = Quantization(**inp["quantization"])
            inp["mean"], inp["std"] = tuple(inp.get("mean", InputSpec.mean)), tuple(inp.get("std", InputSpec.std))
            out = dict(d.pop("output"))
            if out.get("quantization"):
                out["quantization"] = Quantization(**out["quantization"])
            kp = dict(d.pop("keypoints"))
            kp["skeleton"] = [tuple(e) for e in kp.get("skeleton", [])]
            kp["flip_pairs"] = [tuple(e) for e in kp.get("flip_pairs", [])]
            m = cls(input=InputSpec(**inp), output=OutputSpec(**out), keypoints=KeypointSpec(**kp),
                    decode=DecodeSpec(**d.pop("decode", {})), **d)
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None
        m.check(where)
        return m

    def check(self, where: str = MANIFEST) -> None:
        """Reject values the runtime cannot act on, with one line saying which."""
        problems = []
        if self.format not in FORMATS:
            problems.append(f"format {self.format!r} not in {FORMATS}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} not in {PRECISIONS}")
        for spec, what in ((self.input, "input"), (self.output, "output")):
            if spec.layout not in LAYOUTS:
                problems.append(f"{what}.layout {spec.layout!r} not in {LAYOUTS}")
        if self.input.color not in ("rgb", "bgr"):
            problems.append(f"input.color {self.input.color!r} is not rgb or bgr")
        if self.input.height <= 0 or self.input.width <= 0:
            problems.append("input size must be positive")
        if self.output.heatmap_height <= 0 or self.output.heatmap_width <= 0:
            problems.append("heatmap size must be positive")
        if self.decode.method not in DECODE_METHODS:
            problems.append(f"decode.method {self.decode.method!r} not in {DECODE_METHODS}")
        k = len(self.keypoints.names)
        if k == 0:
            problems.append("no keypoint names")
        if any(not (0 <= i < k) for e in self.keypoints.flip_pairs + self.keypoints.skeleton for i in e):
            problems.append("a flip pair or skeleton edge names a keypoint index out of range")
        if self.keypoints.sigmas and len(self.keypoints.sigmas) != k:
            problems.append(f"{len(self.keypoints.sigmas)} OKS sigmas for {k} keypoints")
        if self.model_file not in self.files:
            problems.append(f"model_file {self.model_file!r} has no sha256 in files")
        if problems:
            raise BundleError(f"{where}: " + "; ".join(problems))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Bundle:
    """A manifest and the directory it lives in; files verified at load."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    def file(self, name: str) -> Path:
        return self.path / name


def is_bundle(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and check a bundle; with `verify`, every listed file must exist and match its sha256."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{path}: not a bundle (no {MANIFEST})")
    try:
        data = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{mpath}: manifest is not a JSON object")
    manifest = Manifest.from_json(data, where=str(mpath))
    if verify:
        for name, digest in manifest.files.items():
            fpath = path / name
            if not fpath.is_file():
                raise BundleError(f"{fpath}: listed in the manifest but missing")
            if sha256_file(fpath) != digest:
                raise BundleError(f"{fpath}: sha256 does not match the manifest (corrupt or replaced file)")
    return Bundle(path, manifest)


def find_bundles(path: str | os.PathLike) -> list[Bundle]:
    """A bundle directory itself, or every bundle directly below a directory (sorted by name)."""
    path = Path(path)
    if is_bundle(path):
        return [load_bundle(path)]
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle or directory")
    found = [load_bundle(p) for p in sorted(path.iterdir()) if is_bundle(p)]
    if not found:
        raise BundleError(f"{path}: no bundle (no subdirectory holds {MANIFEST})")
    return found


def write_bundle(out_dir: str | os.PathLike, manifest: Manifest, files: dict[str, str | os.PathLike]) -> Bundle:
    """Write a bundle atomically: build it in a temporary sibling, hash the files, then rename into place.

    `files` maps the bundle's file names to the paths to copy from. An existing bundle at `out_dir` is replaced
    only once the new one is complete, so nothing half-written ever looks valid.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        digests = {}
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
            digests[name] = sha256_file(tmp / name)
        manifest.files = digests
        manifest.check(str(out_dir / MANIFEST))
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(out_dir, manifest)

"""The bundle: a directory with model file(s) and one manifest, `edge_pose.json`.

The manifest is the only contract between the converters (which write it) and the runtime (which reads it).
It holds everything the runtime needs and nothing it must guess. Sizes are (height, width) throughout.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_pose.digests import file_digest, sha256_file
from edge_pose.errors import EdgePoseError
from registry import DECODERS, EXECUTION, FORMATS, PRECISIONS, TASKS, execution_of

SCHEMA = "edge-pose/bundle@1"
MANIFEST = "edge_pose.json"
LAYOUTS = ("NHWC", "NCHW")
MAX_MANIFEST_BYTES = 4 << 20  # a manifest is a few KB; anything near this is not one


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
    output: OutputSpec | None  # pose: the heatmap tensor (None for detect bundles)
    keypoints: KeypointSpec | None  # pose only
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    devices: list[str] = field(default_factory=list)  # profiles this bundle was built for
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    blobs: dict[str, str] = field(default_factory=dict)  # OpenVINO device -> precompiled blob file name
    provenance: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)
    task: str = "pose"
    execution_precision: str = ""  # f32 | f16 | bf16: what the guard validated; "" -> the precision's default
    detect: dict[str, Any] = field(default_factory=dict)  # detect: edge_pose.detect.spec keys; anchors by file
    schema: str = SCHEMA

    def __post_init__(self):
        if not self.execution_precision and self.precision in PRECISIONS:
            self.execution_precision = execution_of(self.format, self.precision)

    @property
    def degraded(self) -> bool:
        """The guard kept this bundle although it missed its fidelity thresholds (--allow-degraded)."""
        return bool(self.fidelity.get("degraded")) if isinstance(self.fidelity, dict) else False

    @property
    def judged(self) -> bool:
        """Its fidelity was measured against a source; False for a ready file packaged as is and never compared
        (its fidelity section says `judged: false`; bundles without that key were judged when converted)."""
        return not isinstance(self.fidelity, dict) or self.fidelity.get("judged", True) is not False

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
            from edge_pose.manifest_schema import check_types

            problem = check_types(data)
            if problem:
                raise BundleError(f"{where}: {problem}")
            d = dict(data)
            inp = dict(d.pop("input"))
            if inp.get("quantization"):
                inp["quantization"] = Quantization(**inp["quantization"])
            inp["mean"], inp["std"] = tuple(inp.get("mean", InputSpec.mean)), tuple(inp.get("std", InputSpec.std))
            out = dict(d.pop("output") or {})
            if out.get("quantization"):
                out["quantization"] = Quantization(**out["quantization"])
            kp = dict(d.pop("keypoints") or {})
            kp["skeleton"] = [tuple(e) for e in kp.get("skeleton", [])]
            kp["flip_pairs"] = [tuple(e) for e in kp.get("flip_pairs", [])]
            pose = d.get("task", "pose") == "pose"
            m = cls(input=InputSpec(**inp), output=OutputSpec(**out) if pose else None,
                    keypoints=KeypointSpec(**kp) if pose else None, decode=DecodeSpec(**d.pop("decode", {})), **d)
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None
        m.check(where)
        return m

    def check(self, where: str = MANIFEST) -> None:
        """Reject values the runtime cannot act on, with one line saying which."""
        problems = []
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} not in {tuple(TASKS)}")
        if self.format not in FORMATS:
            problems.append(f"format {self.format!r} not in {tuple(FORMATS)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} not in {tuple(PRECISIONS)}")
        if self.execution_precision not in EXECUTION:
            problems.append(f"execution_precision {self.execution_precision!r} not in {EXECUTION}")
        if self.task == "detect":
            problems += self._detect_problems()
        for spec, what in ((self.input, "input"), (self.output, "output")):
            if spec is None:
                continue
            if spec.layout not in LAYOUTS:
                problems.append(f"{what}.layout {spec.layout!r} not in {LAYOUTS}")
        if self.input.color not in ("rgb", "bgr"):
            problems.append(f"input.color {self.input.color!r} is not rgb or bgr")
        if self.input.height <= 0 or self.input.width <= 0:
            problems.append("input size must be positive")
        if self.task == "pose":
            problems += self._pose_problems()
        if self.model_file not in self.files:
            problems.append(f"model_file {self.model_file!r} has no sha256 in files")
        for name in [*self.files, *self.blobs.values(), self.model_file]:
            why = unsafe_name(name)
            if why:
                problems.append(f"file name {name!r} {why}")
        missing_blobs = [b for b in self.blobs.values() if b not in self.files]
        if missing_blobs:
            problems.append(f"blob {missing_blobs[0]!r} has no sha256 in files")
        if problems:
            raise BundleError(f"{where}: " + "; ".join(problems))


    def _pose_problems(self) -> list[str]:
        problems = []
        if self.output is None or self.keypoints is None:
            return ["a pose bundle needs output and keypoints"]
        if self.output.heatmap_height <= 0 or self.output.heatmap_width <= 0:
            problems.append("heatmap size must be positive")
        if self.decode.method not in DECODERS:
            problems.append(f"decode.method {self.decode.method!r} not in {tuple(DECODERS)}")
        k = len(self.keypoints.names)
        if k == 0:
            problems.append("no keypoint names")
        if any(not (0 <= i < k) for e in self.keypoints.flip_pairs + self.keypoints.skeleton for i in e):
            problems.append("a flip pair or skeleton edge names a keypoint index out of range")
        if self.keypoints.sigmas and len(self.keypoints.sigmas) != k:
            problems.append(f"{len(self.keypoints.sigmas)} OKS sigmas for {k} keypoints")
        return problems

    def _detect_problems(self) -> list[str]:
        """The detect section must make a valid detector spec (checked by the spec itself, without the anchors)."""
        from edge_pose.detect.spec import DetectSpec, DetectSpecError

        d = dict(self.detect)
        anchors = d.pop("anchors_file", None)
        if d.get("head") == "ssd" and anchors is None:
            return ["detect: an ssd head needs anchors_file"]
        if anchors is not None and anchors not in self.files:
            return [f"detect.anchors_file {anchors!r} has no sha256 in files"]
        if d.get("head") == "ssd":
            d["anchors"] = [[0.5, 0.5, 1.0, 1.0]]  # the file's array is checked when the detector is built
        try:
            DetectSpec.from_dict(d, "detect")
        except DetectSpecError as exc:
            return [str(exc)]
        return []


def unsafe_name(name: str) -> str | None:
    """Why a manifest's file name could leave the bundle directory, or None: every file lies directly inside it."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        return "is empty or not a file name"
    if "/" in name or "\\" in name or name.startswith("~") or "\0" in name:
        return "is not a plain file name inside the bundle (no directories, no absolute paths)"
    return None


@dataclass
class Bundle:
    """A manifest and the directory it lives in; files verified at load."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    def file(self, name: str) -> Path:
        """A file of this bundle; refuses names that would leave it (checked again here: callers pass names on)."""
        why = unsafe_name(name)
        if why:
            raise BundleError(f"{self.path / MANIFEST}: file name {name!r} {why}")
        return _inside(self.path, name)


def is_bundle(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _inside(bundle_dir: Path, name: str) -> Path:
    """The bundle's own regular file `name`: a symlink (even to inside) is refused, so nothing resolves elsewhere."""
    fpath = bundle_dir / name
    if fpath.is_symlink():
        raise BundleError(f"{fpath}: is a symbolic link; a bundle holds its own files")
    if not fpath.is_file():
        raise BundleError(f"{fpath}: listed in the manifest but missing")
    if fpath.resolve().parent != bundle_dir.resolve():
        raise BundleError(f"{fpath}: resolves outside the bundle directory")
    return fpath


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and check a bundle; with `verify`, every listed file must exist and match its sha256."""
    path = Path(path)
    mpath = path / MANIFEST
    if mpath.is_symlink():
        raise BundleError(f"{mpath}: is a symbolic link; a bundle holds its own files")
    if not mpath.is_file():
        raise BundleError(f"{path}: not a bundle (no {MANIFEST})")
    try:
        if mpath.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{mpath}: {mpath.stat().st_size:,} bytes is too large for a manifest")
        text = mpath.read_text(encoding="utf-8")
        from edge_pose.jsonio import check_depth

        check_depth(text, 32, "manifest")  # before parsing: the parser's own recursion guard can be disabled
        data = json.loads(text, parse_constant=_no_constant)
    except BundleError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{mpath}: manifest is not a JSON object")
    bundle = Bundle(path, Manifest.from_json(data, where=str(mpath)))
    if verify:
        verify_files(bundle)
    return bundle


def verify_files(bundle: Bundle) -> None:
    """Every file the manifest lists is the bundle's own and matches its sha256 (BundleError otherwise)."""
    for name, digest in bundle.manifest.files.items():
        fpath = _inside(bundle.path, name)
        if file_digest(fpath) != digest:
            raise BundleError(f"{fpath}: sha256 does not match the manifest (corrupt or replaced file)")


def _finite(value):
    """JSON has no NaN or Infinity: a figure that is not finite (an AP over no people) is written as null."""
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


@dataclass
class Refused:
    """A directory that looks like a bundle but cannot be used, with the one-line reason."""

    path: Path
    reason: str


@dataclass
class Resolved:
    """What a bundle path stands for: the usable bundles, and the refused ones with their reasons."""

    path: Path
    bundles: list[Bundle]
    refused: list[Refused]


def resolve_bundles(path: str | os.PathLike | Bundle | list, task: str | None = None) -> Resolved:
    """The one rule for "a bundle path" (inspect, explain, bench, predict, serve, PoseEstimator): a bundle
    directory, or a directory whose subdirectories are bundles, or a Bundle or a list of them.

    A single bundle that fails its checks is an error (BundleError). In a directory, a bad bundle is refused with
    its reason and the others stay usable; only when none is usable is that an error. With `task`, bundles of
    other tasks are left out (a detector next to pose models is not a pose candidate).
    """
    if isinstance(path, Bundle):
        return Resolved(path.path, [path], [])
    if isinstance(path, (list, tuple)):
        found = [p if isinstance(p, Bundle) else load_bundle(p) for p in path]
        return Resolved(Path("."), [b for b in found if task is None or b.manifest.task == task], [])
    path = Path(path)
    if is_bundle(path):
        bundle = load_bundle(path)
        if task is not None and bundle.manifest.task != task:
            raise BundleError(f"{path}: a {bundle.manifest.task} bundle, not a {task} bundle")
        return Resolved(path, [bundle], [])
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle or directory")
    good, refused = [], []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and is_bundle(p)):
        try:  # the manifest first: a bundle of another task is left out without hashing its files
            bundle = load_bundle(sub, verify=False)
            if task is not None and bundle.manifest.task != task:
                continue
            verify_files(bundle)
        except BundleError as exc:
            refused.append(Refused(sub, str(exc)))
            continue
        good.append(bundle)
    if not good:
        if refused:
            raise BundleError(refused[0].reason if len(refused) == 1 else
                              f"{path}: no usable bundle ({len(refused)} refused; first: {refused[0].reason})")
        what = f"{task} bundle" if task else "bundle"
        raise BundleError(f"{path}: no {what} here (neither it nor a subdirectory holds an {MANIFEST})")
    return Resolved(path, good, refused)


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
            why = unsafe_name(name)
            if why:
                raise BundleError(f"{out_dir}: file name {name!r} {why}")
            shutil.copyfile(src, tmp / name)
            digests[name] = sha256_file(tmp / name)
        manifest.files = digests
        manifest.check(str(out_dir / MANIFEST))
        (tmp / MANIFEST).write_text(json.dumps(_finite(manifest.to_json()), indent=1, allow_nan=False) + "\n")
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

"""Sources: the model a conversion starts from (zoo name, Keras file, SavedModel, ONNX, TF1 frozen graph).

`load_source` reads what the file says, takes what the user states for the rest, and refuses with one line listing
the flags needed when something is missing.
"""
from __future__ import annotations

from pathlib import Path

from converters.errors import SourceError
from converters.sources.base import KINDS, Source
from converters.sources.facts import Facts
from converters.zoo_checkpoints import OFFICIAL

__all__ = ["KINDS", "Source", "SourceError", "load_source"]


def _zoo_names() -> list[str]:
    try:
        from converters.zoo import ZOO
    except ImportError:
        return []
    return list(ZOO)


def _official_checkpoint(name: str, facts: Facts):
    """The verified cached copy of the official COCO checkpoint of zoo model `name` at the requested size."""
    import sys

    from converters.zoo import get_entry
    from converters.zoo_checkpoints import fetch

    size = facts.input_size or get_entry(name).default_input_size
    path, official, _ = fetch(name, size, log=lambda line: print(line, file=sys.stderr, flush=True))
    return path, official


def load_source(path_or_zoo_name, checkpoint=None, input_size=None, layout=None, color=None, mean=None, std=None,
                keypoints=None, output=None, seed=0, for_format=None) -> Source:
    """A Source from a zoo name or a model file (.onnx, .pb, .keras, or a SavedModel directory).

    input_size is (H, W) or "H,W"; mean/std are three numbers in 0..255 units in the model's colour order;
    keypoints is coco17, aic14, a JSON file or a KeypointSpec; output names the heatmap tensor. For a zoo model,
    checkpoint is an mmpose .pth, "coco" (the official COCO checkpoint, downloaded once and verified) or None (seeded).
    """
    facts = Facts.parse(input_size, layout, color, mean, std, keypoints, output)
    name = str(path_or_zoo_name)
    path = Path(name)
    if not path.exists():
        zoo = _zoo_names()
        if name in zoo:
            from converters.sources.keras_source import load_zoo

            ckpt = Path(checkpoint) if checkpoint else None
            official = None
            if ckpt is not None and str(checkpoint) == OFFICIAL and not ckpt.is_file():
                ckpt, official = _official_checkpoint(name, facts)
            if ckpt is not None and not ckpt.is_file():
                raise SourceError(f"{ckpt}: checkpoint file not found (or pass --checkpoint {OFFICIAL} for the "
                                  f"official mmpose COCO checkpoint)")
            source = load_zoo(name, facts, ckpt, seed, for_format=for_format)
            if official is not None:
                source.checkpoint_url = official.url
            return source
        raise SourceError(f"{name}: no such model file, and not a zoo model ({', '.join(zoo) or 'zoo unavailable'})")
    if checkpoint is not None:
        raise SourceError(f"{name}: --checkpoint applies to zoo models only; the model file carries its weights")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
            raise SourceError(f"{path}: a directory but not a SavedModel (no saved_model.pb)")
        from converters.sources.savedmodel import load_savedmodel

        return load_savedmodel(path, facts)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from converters.sources.onnx_source import load_onnx

        return load_onnx(path, facts)
    if suffix == ".pb":
        from converters.sources.frozen_graph import load_frozen_graph

        return load_frozen_graph(path, facts)
    if suffix in (".keras", ".h5"):
        from converters.sources.keras_source import load_keras_file

        return load_keras_file(path, facts)
    if suffix in (".tflite", ".xml"):  # a finished model: nothing to convert from
        raise SourceError(f"{path}: a ready {suffix} is packaged as it is, not converted (edge-pose convert "
                          f"packages it; converters.package_ready.package_pose)")
    raise SourceError(f"{path}: unknown model file type {suffix or '(no suffix)'!r}; expected .onnx, .pb, .keras "
                      f"or a SavedModel directory")

"""A detect bundle as a Detector: selection (the same backends, profiles, precision and record rules as pose
bundles), the anchors from the bundle's own file, the spec from its manifest."""
from __future__ import annotations

from typing import Any

import numpy as np

from edge_pose.bundle import BundleError
from edge_pose.detect.detector import Detector


def spec_of(bundle) -> dict[str, Any]:
    """The manifest's detect section with its anchors read from the bundle (a plain float32 .npy, no pickles)."""
    d = dict(bundle.manifest.detect)
    anchors = d.pop("anchors_file", None)
    if anchors is not None:
        path = bundle.file(anchors)
        try:
            d["anchors"] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: unreadable anchors ({exc})") from None
    return d


def open_detector(path, device: str = "auto", **select_options) -> Detector:
    """The best detector bundle at `path` (a bundle or a directory holding one) on this device, ready to run."""
    from edge_pose.select import open_best

    loaded = open_best(path, device=device, task="detect", **select_options)
    det = Detector(loaded.session, spec_of(loaded.bundle), where=str(loaded.bundle.path / "edge_pose.json"))
    det.loaded, det.bundle = loaded, loaded.bundle
    return det

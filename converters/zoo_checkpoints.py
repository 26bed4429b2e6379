"""The official mmpose COCO checkpoints of the zoo models, fetched on demand (`--checkpoint coco`).

The table is data: (zoo name, input size) -> mmpose config and the checkpoint path on download.openmmlab.com, as
listed in mmpose 1.x's model-zoo files (configs/body_2d_keypoint/topdown_heatmap/coco/{litehrnet,resnet,cpm}_coco
.yml/.md). OpenMMLab names a published checkpoint `<stem>-<first 8 hex digits of its sha256>_<date>.pth`, so the
file name itself says what the download must hash to; a mismatch is refused.

A download goes into a temporary file beside its final name and is renamed only once complete and verified, so an
interrupted or corrupt transfer leaves nothing that looks like a checkpoint. Later calls reuse the cached file
(re-hashed each time: a damaged cache is fetched again).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from converters.errors import ConversionError

OFFICIAL = "coco"  # the --checkpoint value that means "the official COCO checkpoint of this model and size"
BASE_URL = "https://download.openmmlab.com/mmpose/"
BASE_URL_ENV = "EDGE_POSE_CHECKPOINT_BASE_URL"  # tests (and mirrors) point this elsewhere
TIMEOUT_S = 20.0
_V1 = "v1/body_2d_keypoint/topdown_heatmap/coco/"
_LITEHRNET = "top_down/litehrnet/"

# (zoo name, (height, width)) -> (mmpose 1.x config, path under BASE_URL). Lite-HRNet's 1.x configs still point at
# the 0.x checkpoints (mmpose 0.x key names, read as well). mmpose 1.x's resnet_coco.yml/.md list the 256x192 file
# for res101 at 384x288 too (open-mmlab/mmpose#3048); the 384x288 one published for 0.x is used instead.
CHECKPOINTS: dict[tuple[str, tuple[int, int]], tuple[str, str]] = {
    ("litehrnet-18", (256, 192)): ("td-hm_litehrnet-18_8xb64-210e_coco-256x192",
                                   _LITEHRNET + "litehrnet18_coco_256x192-6bace359_20211230.pth"),
    ("litehrnet-18", (384, 288)): ("td-hm_litehrnet-18_8xb32-210e_coco-384x288",
                                   _LITEHRNET + "litehrnet18_coco_384x288-8d4dac48_20211230.pth"),
    ("litehrnet-30", (256, 192)): ("td-hm_litehrnet-30_8xb64-210e_coco-256x192",
                                   _LITEHRNET + "litehrnet30_coco_256x192-4176555b_20210626.pth"),
    ("litehrnet-30", (384, 288)): ("td-hm_litehrnet-30_8xb32-210e_coco-384x288",
                                   _LITEHRNET + "litehrnet30_coco_384x288-a3aef5c4_20210626.pth"),
    ("simplebaseline-r50", (256, 192)): ("td-hm_res50_8xb64-210e_coco-256x192",
                                         _V1 + "td-hm_res50_8xb64-210e_coco-256x192-04af38ce_20220923.pth"),
    ("simplebaseline-r50", (384, 288)): ("td-hm_res50_8xb64-210e_coco-384x288",
                                         _V1 + "td-hm_res50_8xb64-210e_coco-384x288-7b8db90e_20220923.pth"),
    ("simplebaseline-r101", (256, 192)): ("td-hm_res101_8xb64-210e_coco-256x192",
                                          _V1 + "td-hm_res101_8xb64-210e_coco-256x192-065d3625_20220926.pth"),
    ("simplebaseline-r101", (384, 288)): ("td-hm_res101_8xb32-210e_coco-384x288",
                                          "top_down/resnet/res101_coco_384x288-8c71bdc9_20200709.pth"),
    ("simplebaseline-r152", (256, 192)): ("td-hm_res152_8xb32-210e_coco-256x192",
                                          _V1 + "td-hm_res152_8xb32-210e_coco-256x192-0345f330_20220928.pth"),
    ("simplebaseline-r152", (384, 288)): ("td-hm_res152_8xb32-210e_coco-384x288",
                                          _V1 + "td-hm_res152_8xb32-210e_coco-384x288-7fbb906f_20220927.pth"),
    ("cpm", (256, 192)): ("td-hm_cpm_8xb64-210e_coco-256x192",
                          _V1 + "td-hm_cpm_8xb64-210e_coco-256x192-0e978875_20220920.pth"),
    ("cpm", (384, 288)): ("td-hm_cpm_8xb32-210e_coco-384x288",
                          _V1 + "td-hm_cpm_8xb32-210e_coco-384x288-165487b8_20221011.pth"),
}

_DIGEST_IN_NAME = re.compile(r"-([0-9a-f]{8})(?:_\d{8})?\.pth$")


class CheckpointDownloadError(ConversionError):
    """The official checkpoint could not be fetched or verified; one line with the URL and the way out."""


@dataclass(frozen=True)
class Official:
    model: str
    input_size: tuple[int, int]
    config: str
    url: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        match = _DIGEST_IN_NAME.search(self.file_name)
        if not match:
            raise CheckpointDownloadError(f"{self.url}: the file name carries no sha256 prefix to verify against")
        return match.group(1)


def official(model: str, input_size) -> Official:
    """The official checkpoint of `model` at `input_size` (H, W); one line naming what exists when there is none."""
    size = (int(input_size[0]), int(input_size[1]))
    try:
        config, path = CHECKPOINTS[(model, size)]
    except KeyError:
        sizes = sorted(f"{h}x{w}" for (m, (h, w)) in CHECKPOINTS if m == model)
        have = f"it has one at {', '.join(sizes)}" if sizes else "none for this model"
        raise CheckpointDownloadError(f"{model}: mmpose publishes no COCO checkpoint at {size[0]}x{size[1]} (HxW); "
                                      f"{have}; pass a local file with --checkpoint PATH") from None
    base = os.environ.get(BASE_URL_ENV) or BASE_URL
    return Official(model, size, config, base.rstrip("/") + "/" + path)


def cache_dir() -> Path:
    """$EDGE_POSE_CACHE_DIR/checkpoints (or $EDGE_POSE_CACHE, $XDG_CACHE_HOME/edge-pose, ~/.cache/edge-pose)."""
    root = os.environ.get("EDGE_POSE_CACHE_DIR") or os.environ.get("EDGE_POSE_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-pose"
    return base / "checkpoints"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _way_out(ckpt: Official) -> str:
    return f"download it yourself (mmpose config {ckpt.config}) and pass it with --checkpoint PATH"


def _download(ckpt: Official, dest: Path) -> str:
    """Stream the URL into a temporary file beside `dest`, verify, rename; returns the sha256. Nothing on failure."""
    import http.client
    import urllib.error
    import urllib.request

    from edge_pose.progress import bar

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(ckpt.url, timeout=TIMEOUT_S) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    shown = bar(f"downloading {ckpt.file_name}", total, unit="B")
                    got = 0
                    try:
                        for block in iter(lambda: response.read(1 << 16), b""):
                            out.write(block)
                            digest.update(block)
                            got += len(block)
                            shown.update(len(block))
                    finally:
                        shown.close()
            except urllib.error.HTTPError as exc:
                raise CheckpointDownloadError(f"{ckpt.url}: HTTP {exc.code} {exc.reason}; {_way_out(ckpt)}") from None
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:  # offline,
                # refused, timed out, or cut short (IncompleteRead)
                reason = getattr(exc, "reason", None) or exc
                raise CheckpointDownloadError(f"{ckpt.url}: cannot download ({type(exc).__name__}: {reason}); "
                                              f"{_way_out(ckpt)}") from None
        if total is not None and got != total:
            raise CheckpointDownloadError(f"{ckpt.url}: transfer cut short ({got} of {total} bytes); "
                                          f"{_way_out(ckpt)}")
        sha = digest.hexdigest()
        if not sha.startswith(ckpt.sha256_prefix):
            raise CheckpointDownloadError(f"{ckpt.url}: downloaded file has sha256 {sha[:8]}..., its name says "
                                          f"{ckpt.sha256_prefix}: refused (corrupt or replaced); "
                                          f"{_way_out(ckpt)}")
        os.replace(tmp, dest)
        return sha
    finally:
        tmp.unlink(missing_ok=True)


def fetch(model: str, input_size, log: Callable[[str], None] | None = None) -> tuple[Path, Official, str]:
    """The verified local copy of the official checkpoint (downloaded once): (path, what it is, its sha256)."""
    ckpt = official(model, input_size)
    dest = cache_dir() / ckpt.file_name
    if dest.is_file():
        sha = sha256_of(dest)
        if sha.startswith(ckpt.sha256_prefix):
            if log:
                log(f"  checkpoint: {dest} (cached, sha256 {sha[:12]}...)")
            return dest, ckpt, sha
        dest.unlink()  # damaged cache: fetch again
    if log:
        log(f"  checkpoint: downloading {ckpt.url}")
    sha = _download(ckpt, dest)
    if log:
        log(f"  checkpoint: {dest} (sha256 {sha[:12]}... verified)")
    return dest, ckpt, sha

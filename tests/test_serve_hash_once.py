"""`edge-pose serve` hashes each bundle file once at start-up (its config check, the selector and the detector
search all resolve the same bundles), and a file changed on disk afterwards is hashed again and refused.

The daemon is the real one (config load, validation, PoseEstimator on LiteRT, capture of a real video, pipeline),
run in a thread as `edge-pose serve` runs it; the hash function is the real one, wrapped to count its calls.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from serve_env import make_video

from edge_pose import bundle, digests
from edge_pose.bundle import resolve_bundles
from edge_pose.digests import SETTLED_NS
from edge_pose.serve.config import load
from edge_pose.serve.config_schema import ConfigError
from edge_pose.serve.daemon import Daemon


def _args(bundle: Path, source: Path) -> SimpleNamespace:
    """The flags `edge-pose serve --bundle B --source S --http off --threads 1` parses to."""
    return SimpleNamespace(bundle=str(bundle), source=str(source), http="off", threads=1, detector=None, mqtt=None,
                           topic=None, jsonl=None, token=None, device=None, log_level=None)


def _wait_until_settled(root: Path) -> None:
    """Files changed within SETTLED_NS of being hashed are (rightly) hashed again; wait until the copies are older."""
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in root.rglob("*") if p.is_file())
    time.sleep(max(0.0, (newest + SETTLED_NS - time.time_ns()) / 1e9 + 0.05))


@pytest.fixture
def counted(monkeypatch):
    calls: Counter = Counter()
    real = digests.sha256_file

    def sha256_file(path):
        calls[Path(path).resolve()] += 1
        return real(path)

    for module in (digests, bundle):  # every name the hash function is called by
        monkeypatch.setattr(module, "sha256_file", sha256_file)
    return calls


def test_serve_start_hashes_each_bundle_once_and_refuses_a_changed_file(tmp_path, cpm_bundle, counted):
    bundles = tmp_path / "bundles"
    for name in ("cpm-a", "cpm-b"):  # two competing pose bundles: the selector resolves both
        shutil.copytree(cpm_bundle.path, bundles / name)
    video = make_video(tmp_path / "walk.avi")
    _wait_until_settled(bundles)
    models = {name: (bundles / name / "model.tflite").resolve() for name in ("cpm-a", "cpm-b")}

    cfg = load(None, _args(bundles, video))  # what `edge-pose serve` does first: load and validate the config
    daemon = Daemon(cfg)
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(daemon.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while daemon.state != "running" and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.state == "running", f"daemon never ran (state {daemon.state})"
    assert daemon.pipeline is not None and daemon.estimator is not None
    daemon.request_stop()
    thread.join(15)
    assert status == [0]
    # config check + selector (+ the detector search, which reads manifests only): each file read once
    assert counted == Counter({models["cpm-a"]: 1, models["cpm-b"]: 1}), counted

    # a file replaced in place, same size and its mtime set back: its ctime still changed, so it is hashed again
    target = models["cpm-a"]
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns

    resolved = resolve_bundles(bundles, task="pose")
    assert [b.path.name for b in resolved.bundles] == ["cpm-b"]
    assert len(resolved.refused) == 1 and "sha256 does not match the manifest" in resolved.refused[0].reason
    assert counted[target] == 2 and counted[models["cpm-b"]] == 1, counted  # only the changed file read again

    with pytest.raises(ConfigError) as exc:  # serve pointed at that bundle refuses it in one line
        load(None, _args(bundles / "cpm-a", video))
    assert len(exc.value.problems) == 1, exc.value.problems
    assert "[model] bundle" in exc.value.problems[0] and "model.tflite: sha256 does not match" in \
        exc.value.problems[0]


def test_a_file_changed_just_before_it_was_hashed_is_hashed_again(tmp_path, cpm_bundle, counted):
    """Timestamps may be too coarse to show a second change in the same tick: a fresh file is never remembered."""
    shutil.copytree(cpm_bundle.path, tmp_path / "fresh")
    model = (tmp_path / "fresh" / "model.tflite").resolve()
    for _ in range(2):
        resolve_bundles(tmp_path / "fresh", task="pose")
    assert counted[model] == 2

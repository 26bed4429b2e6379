"""Official checkpoints on demand (`--checkpoint coco`): served here by a loopback HTTP server (the real
download.openmmlab.com is not reachable from CI), downloaded once, verified against the sha256 prefix in the file
name, cached atomically; offline, a bad digest or a cut transfer stop with one line and leave nothing behind."""
from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest

from converters import zoo_checkpoints as zc
from converters.zoo_checkpoints import CHECKPOINTS, CheckpointDownloadError, fetch, official
from shared import fixture

FIXTURE = "litehrnet18_256x192.pth"
KEY = ("litehrnet-18", (256, 192))


class _Server:
    """http.server on 127.0.0.1 in a thread, serving `root`; `truncate` sends half of each file with its full
    Content-Length, then closes (a transfer cut short)."""

    def __init__(self, root: Path):
        self.root, self.truncate, self.requests = root, False, []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if not server.truncate:
                    return super().do_GET()
                data = (root / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mmpose/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """The Lite-HRNet-18 fixture served under a name carrying its real sha256 prefix; the table entry points there."""
    src = fixture(FIXTURE)
    sha = _sha256(src)
    rel = f"top_down/litehrnet/litehrnet18_coco_256x192-{sha[:8]}_20211230.pth"
    (tmp_path / "www" / "mmpose" / "top_down" / "litehrnet").mkdir(parents=True)
    shutil.copyfile(src, tmp_path / "www" / "mmpose" / rel)
    server = _Server(tmp_path / "www")
    monkeypatch.setenv(zc.BASE_URL_ENV, server.url)
    monkeypatch.setenv("EDGE_POSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(CHECKPOINTS, KEY, (CHECKPOINTS[KEY][0], rel))
    yield server, sha, tmp_path / "cache" / "checkpoints"
    server.close()


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def _one_line(exc) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


def test_table_covers_every_zoo_model_at_both_sizes_with_digest_prefixes():
    from converters.zoo import ZOO

    for name, entry in ZOO.items():
        for size in entry.input_sizes:
            ckpt = official(name, size)
            assert ckpt.url.startswith("https://download.openmmlab.com/mmpose/") and ckpt.url.endswith(".pth")
            assert len(ckpt.sha256_prefix) == 8
            assert f"{size[0]}x{size[1]}" in ckpt.file_name and f"{size[0]}x{size[1]}" in ckpt.config
            assert ckpt.config == entry.mmpose_configs[entry.input_sizes.index(size)]  # one name per config
    assert official("litehrnet-18", (256, 192)).url == \
        "https://download.openmmlab.com/mmpose/top_down/litehrnet/litehrnet18_coco_256x192-6bace359_20211230.pth"
    assert len({path for _, path in CHECKPOINTS.values()}) == len(CHECKPOINTS)  # no size reuses another's file
    with pytest.raises(CheckpointDownloadError, match="no COCO checkpoint at 320x256.*256x192, 384x288.*--checkpoint"):
        official("litehrnet-18", (320, 256))


def test_download_verifies_caches_and_is_reused(served):
    server, sha, cache = served
    lines = []
    path, ckpt, digest = fetch("litehrnet-18", (256, 192), log=lines.append)
    assert digest == sha == _sha256(path) and path.parent == cache
    assert path.name == ckpt.file_name and _leftovers(cache) == [path.name]  # no temporary file left
    assert len(server.requests) == 1 and "verified" in lines[-1]
    again, _, digest2 = fetch("litehrnet-18", (256, 192), log=lines.append)
    assert again == path and digest2 == sha and len(server.requests) == 1  # second call: no download
    assert "cached" in lines[-1]


def test_damaged_cache_is_fetched_again(served):
    server, sha, cache = served
    path, _, _ = fetch("litehrnet-18", (256, 192))
    path.write_bytes(b"not the checkpoint")
    path2, _, digest = fetch("litehrnet-18", (256, 192))
    assert path2 == path and digest == sha and len(server.requests) == 2


def test_bad_digest_is_refused_in_one_line_and_nothing_is_cached(served, monkeypatch):
    server, sha, cache = served
    wrong = "00000000" if not sha.startswith("00000000") else "11111111"
    rel = f"top_down/litehrnet/litehrnet18_coco_256x192-{wrong}_20211230.pth"
    shutil.copyfile(fixture(FIXTURE), server.root / "mmpose" / rel)
    monkeypatch.setitem(CHECKPOINTS, KEY, (CHECKPOINTS[KEY][0], rel))
    with pytest.raises(CheckpointDownloadError) as exc:
        fetch("litehrnet-18", (256, 192))
    line = _one_line(exc)
    assert server.url + rel in line and f"sha256 {sha[:8]}" in line and wrong in line
    assert "--checkpoint PATH" in line
    assert _leftovers(cache) == []


def test_server_down_is_one_line_with_the_url_and_the_way_out(served, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(zc.BASE_URL_ENV, f"http://127.0.0.1:{port}/mmpose/")
    with pytest.raises(CheckpointDownloadError) as exc:
        fetch("litehrnet-18", (256, 192))
    line = _one_line(exc)
    assert line.startswith(f"http://127.0.0.1:{port}/mmpose/top_down/litehrnet/") and "cannot download" in line
    assert "--checkpoint PATH" in line
    assert _leftovers(served[2]) == []


def test_missing_file_on_the_server_is_one_line(served, monkeypatch):
    monkeypatch.setitem(CHECKPOINTS, KEY, (CHECKPOINTS[KEY][0], "top_down/litehrnet/gone-12345678_20211230.pth"))
    with pytest.raises(CheckpointDownloadError, match="HTTP 404.*--checkpoint PATH") as exc:
        fetch("litehrnet-18", (256, 192))
    _one_line(exc)


def test_truncated_transfer_leaves_nothing_that_looks_valid(served):
    server, _, cache = served
    server.truncate = True
    with pytest.raises(CheckpointDownloadError) as exc:
        fetch("litehrnet-18", (256, 192))
    line = _one_line(exc)
    assert "--checkpoint PATH" in line
    assert _leftovers(cache) == []


def test_non_tty_download_progress_is_plain_lines(served, capfd):
    fetch("litehrnet-18", (256, 192))
    err = capfd.readouterr().err
    assert "\r" not in err
    assert "downloading litehrnet18_coco_256x192-" in err and "(100%)" in err


def test_zoo_source_with_official_checkpoint_records_url_and_digest(served):
    """`load_source(name, checkpoint="coco")`: the downloaded file is read by the safe reader into the model and the
    URL and full sha256 reach the provenance the manifest is built from (manifest_build adds checkpoint_sha256 of
    source.checkpoint beside them)."""
    from converters.sources import load_source

    server, sha, cache = served
    source = load_source("litehrnet-18", checkpoint="coco")
    prov = source.provenance()
    assert not source.untrained and prov["checkpoint_url"] == official("litehrnet-18", (256, 192)).url
    assert prov["source_sha256"] == sha and Path(prov["checkpoint"]).parent == cache
    assert source.checkpoint == Path(prov["checkpoint"]) and _sha256(source.checkpoint) == sha


def test_cli_offline_is_one_line_naming_url_and_local_option(tmp_path):
    import os
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, zc.BASE_URL_ENV: f"http://127.0.0.1:{port}/mmpose", "EDGE_POSE_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, "-m", "edge_pose.cli.main", "convert", "litehrnet-18", "--checkpoint",
                          "coco", "--format", "tflite", "--precision", "fp32", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, run.stderr
    assert f"http://127.0.0.1:{port}/mmpose/top_down/litehrnet/litehrnet18_coco_256x192-6bace359_20211230.pth" \
        in errors[0] and "--checkpoint PATH" in errors[0]
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


def test_demo_uses_the_official_checkpoint_when_it_downloads(served, capsys):
    from converters.cli_demo import official_checkpoint

    path = official_checkpoint("litehrnet-18")
    assert path and Path(path).is_file() and "seeded" not in capsys.readouterr().out


def test_demo_says_in_one_line_when_it_falls_back_to_seeded_weights(served, monkeypatch, capsys):
    from converters.cli_demo import official_checkpoint

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(zc.BASE_URL_ENV, f"http://127.0.0.1:{port}/mmpose/")
    assert official_checkpoint("litehrnet-18") is None
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(out) == 1 and f"127.0.0.1:{port}" in out[0]
    assert "seeded untrained weights" in out[0] and "no skeleton on anyone" in out[0]

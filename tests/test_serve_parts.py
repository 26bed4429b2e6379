"""The daemon's parts on their own, with real files and real OpenCV: config validation (one-line errors naming file
and key), the newest-frame capture, tracking ids and One-Euro smoothing, Prometheus text, JSON-lines rotation.
"""
from __future__ import annotations

import json
import subprocess
import time

import cv2
import numpy as np
import pytest

from serve_env import EDGE_POSE, ROOT, free_port, person_frames

from edge_pose.cli.main import main as cli_main
from edge_pose.serve.jsonl_sink import JsonlSink
from edge_pose.serve.metrics import Registry
from edge_pose.serve.sources import Capture
from edge_pose.serve.tracking import OneEuro, Tracker


@pytest.fixture()
def bundle_dir(cpm_bundle):
    return cpm_bundle.path  # config validation resolves the bundle path as every command does


def _cli(argv, capsys) -> tuple[int, list[str]]:
    code = cli_main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_check_config_accepts_a_good_file(tmp_path, bundle_dir, capsys):
    good = tmp_path / "good.toml"
    good.write_text(f'[model]\nbundle = "{bundle_dir}"\n[source]\nuri = 0\n[mqtt]\nenabled = true\n'
                    f'[tracking]\nenabled = true\nbeta = 1\n')
    assert cli_main(["serve", "--check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "source 0" in out and "mqtt 127.0.0.1:1883 edge-pose/poses" in out


@pytest.mark.parametrize("body, key", [
    ("[model\nbundle = 1", "not valid TOML"),
    ('[http]\nport = "eighty"', "[http] port: expected an integer"),
    ("[http]\nport = 99999", "[http] port: must be 0..65535"),
    ("[mqtt]\nqos_level = 1", "[mqtt] qos_level: unknown key"),
    ("[cameras]\nx = 1", "[cameras]: unknown section"),
    ('[persons]\nboxes = "yolo.json"', "[persons] boxes: a COCO detections file"),
    ('[http]\nhost = "0.0.0.0"', "[http] token: required when binding 0.0.0.0"),
    ('[mqtt]\nenabled = true\ntopic = "a/#"', "[mqtt] topic: must be a non-empty topic without wildcards"),
    ('[jsonl]\npath = "/no/such/dir/x.jsonl"', "[jsonl] path: directory /no/such/dir does not exist"),
    ('[log]\nlevel = "loud"', "[log] level"),
])
def test_check_config_rejects_with_one_line_naming_file_and_key(tmp_path, bundle_dir, capsys, monkeypatch, body,
                                                                 key):
    monkeypatch.delenv("EDGE_POSE_TOKEN", raising=False)
    bad = tmp_path / "bad.toml"
    base = f'[model]\nbundle = "{bundle_dir}"\n[source]\nuri = "/dev/video0"\n'
    bad.write_text(body if "TOML" in key else base + body)
    code, lines = _cli(["serve", "--check-config", str(bad)], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert str(bad) in lines[0] and key in lines[0], lines[0]


def test_missing_bundle_and_source_are_named(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nuri = "x.mp4"\n')
    code, lines = _cli(["serve", "--check-config", str(cfg)], capsys)
    assert code == 2 and lines == [f"edge-pose serve: error: {cfg}: [model] bundle: required (a bundle or a directory "
                                   f"of bundles; or --bundle PATH)"]
    code, lines = _cli(["serve", "--check-config", str(cfg), "--bundle", str(tmp_path)], capsys)
    assert code == 2 and lines == [f"edge-pose serve: error: {cfg}: [model] bundle: {tmp_path}: no pose bundle here "
                                   "(neither it nor a subdirectory holds an edge_pose.json)"]


def test_refuses_to_serve_off_loopback_without_a_token(tmp_path, bundle_dir):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([str(EDGE_POSE), "serve", "--bundle", str(bundle_dir), "--source", "0",
                          "--http", f"0.0.0.0:{free_port()}"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "[http] token: required when binding 0.0.0.0" in lines[0], run.stderr


def test_capture_keeps_only_the_newest_frame_and_counts_drops(tmp_path):
    for i, frame in enumerate(person_frames(n=4)):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), frame)
    reads, drops = [], []
    cap = Capture(str(tmp_path), loop=True, fps=400, on_read=lambda: reads.append(1), on_drop=lambda: drops.append(1))
    cap.start()
    first = cap.latest(timeout=5)
    assert first is not None and first.name.endswith(".jpg") and first.image.shape == (320, 240, 3)
    deadline = time.monotonic() + 10
    while cap.frames_read < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    cap.stop()
    cap.join(5)
    newest = cap.latest(timeout=0)
    assert newest.index == cap.frames_read >= 40, "the slot holds the newest frame"
    assert cap.latest(timeout=0) is None, "each frame is handed out once"
    assert cap.frames_dropped == cap.frames_read - 2, "every frame not taken was counted as dropped"
    assert len(reads) == cap.frames_read and len(drops) == cap.frames_dropped
    assert cap.state == "stopped"


def _person(center, rng=None, noise=0.0):
    offsets = np.array([[0, -40], [-15, -20], [15, -20], [-10, 20], [10, 20], [-10, 60], [10, 60]], float)
    kp = np.asarray(center, float) + offsets
    if rng is not None:
        kp = kp + rng.normal(0, noise, kp.shape)
    return {"keypoints": kp, "scores": np.full(len(kp), 0.9), "box": None}


def test_tracker_keeps_ids_when_people_move_and_swap_order():
    sigmas = [0.08] * 7
    for match in ("oks", "iou"):
        tracker = Tracker(match=match, threshold=0.3, max_missed=2, smoothing=False, sigmas=sigmas)
        ids_a, ids_b = [], []
        for t in range(10):
            a, b = _person((100 + 3 * t, 100)), _person((300 - 3 * t, 120))
            people = tracker.update([a, b] if t % 2 else [b, a], t / 10)
            ids = {round(p["keypoints"][0, 0]): p["id"] for p in people}
            ids_a.append(ids[100 + 3 * t])
            ids_b.append(ids[300 - 3 * t])
        assert set(ids_a) == {ids_a[0]} and set(ids_b) == {ids_b[0]} and ids_a[0] != ids_b[0], match
        newcomer = tracker.update([_person((500, 300))], 1.0)[0]
        assert newcomer["id"] == 3
        for t in range(3):
            tracker.update([_person((500, 300))], 1.1 + t / 10)
        assert [tr.id for tr in tracker.tracks] == [3], "unseen tracks expire after max_missed frames"


def test_one_euro_smooths_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    f = OneEuro(min_cutoff=1.0, beta=0.05)
    still = [f(np.array([[50.0, 50.0]]) + rng.normal(0, 2, (1, 2)), t / 30)[0] for t in range(60)]
    assert np.std(np.array(still)[20:], axis=0).max() < 0.5 * 2
    out = None
    for t in range(60, 120):  # jump 100 px and hold: the filter must arrive
        out = f(np.array([[150.0, 50.0]]), t / 30)
    assert abs(out[0, 0] - 150.0) < 1.0

    smoothed = Tracker(smoothing=True, sigmas=[0.08] * 7)
    raw = []
    for t in range(40):
        p = smoothed.update([_person((200, 200), rng, noise=3.0)], t / 30)[0]
        raw.append(p["keypoints"][0])
    assert np.std(np.array(raw)[10:], axis=0).max() < 2.0, "jitter of 3 px should be damped"


def test_prometheus_text_format():
    r = Registry()
    c = r.counter("x_total", "Things.", ("kind",))
    c.inc(kind='a"b')
    h = r.histogram("lat_seconds", "Latency.", ("stage",), buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v, stage="infer")
    r.info("backend", "What runs.").set_info(backend="openvino")
    text = r.render()
    assert '# TYPE x_total counter\nx_total{kind="a\\"b"} 1\n' in text
    assert 'lat_seconds_bucket{stage="infer",le="0.1"} 1' in text
    assert 'lat_seconds_bucket{stage="infer",le="1"} 2' in text
    assert 'lat_seconds_bucket{stage="infer",le="+Inf"} 3' in text
    assert 'lat_seconds_count{stage="infer"} 3' in text and 'lat_seconds_sum{stage="infer"} 5.55' in text
    assert 'backend_info{backend="openvino"} 1' in text


def test_jsonl_rotation_keeps_every_line_up_to_the_backup_count(tmp_path):
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(str(path), max_bytes=1024, backups=50, flush_s=10)
    for seq in range(1, 201):
        sink.submit(seq, json.dumps({"seq": seq, "pad": "x" * 40}))
    sink.close()
    files = sorted(tmp_path.glob("out.jsonl.*"), key=lambda p: -int(p.suffix[1:])) + [path]
    assert all(f.stat().st_size <= 1024 for f in files) and sink.rotations == len(files) - 1
    seqs = [json.loads(line)["seq"] for f in files for line in f.read_text().splitlines()]
    assert seqs == list(range(1, 201)) and sink.written == 200 and sink.dropped == 0


def test_docs_config_reference_is_complete_and_valid():
    """The TOML block in docs/serve.md parses, uses only known keys, and documents every key with its default."""
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from dataclasses import asdict

    from edge_pose.serve.config import from_dict
    from edge_pose.serve.config_schema import ServeConfig

    text = (ROOT / "docs" / "serve.md").read_text()
    block = re.search(r"## Config reference.*?```toml\n(.*?)```", text, re.S).group(1)
    data = tomllib.loads(block)
    from_dict(data, "docs/serve.md")  # raises on unknown sections or keys
    defaults = asdict(ServeConfig())
    for section, keys in defaults.items():
        if section == "origin":
            continue
        assert set(data[section]) == set(keys), f"[{section}] documented keys differ"
        for key, value in keys.items():
            if key not in ("bundle", "uri"):
                assert data[section][key] == value, f"[{section}] {key}: docs say {data[section][key]!r}"


def test_systemd_unit_runs_serve_with_sigterm(tmp_path):
    import configparser
    import shutil

    unit = (ROOT / "packaging" / "edge-pose.service").read_text()
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(unit)
    service = parser["Service"]
    assert service["ExecStart"].endswith("edge-pose serve --config /etc/edge-pose/serve.toml")
    assert "--check-config" in service["ExecStartPre"] and service["KillSignal"] == "SIGTERM"
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    if shutil.which("systemd-analyze"):
        local = tmp_path / "edge-pose.service"
        local.write_text(unit.replace("/opt/edge-pose/.venv/bin/edge-pose", str(EDGE_POSE)))
        run = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
        problems = [ln for ln in run.stderr.splitlines() if "edge-pose.service" in ln]
        assert not problems, run.stderr


def test_capture_reads_an_http_stream_and_reconnects_at_its_end(tmp_path):
    """An http:// source through OpenCV (FFmpeg), served by a real HTTP server; the end of the stream is a failure
    the capture reports and recovers from by reconnecting."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from serve_env import make_video

    make_video(tmp_path / "clip.avi")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cap = Capture(f"http://127.0.0.1:{server.server_address[1]}/clip.avi", backoff=(0.05, 0.1))
    assert cap.kind == "stream"
    cap.start()
    try:
        deadline = time.monotonic() + 20
        while cap.reconnects < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        frame = cap.latest(timeout=1)
        assert cap.reconnects >= 1 and "read failed" in cap.last_error
        assert cap.frames_read >= 20 and frame is not None and frame.image.shape == (320, 240, 3)
    finally:
        cap.stop()
        cap.join(5)
        server.shutdown()


def _serve_until_it_fails(bundle, port: int) -> subprocess.CompletedProcess:
    """`edge-pose serve` on a camera source and a loopback port, run until it exits (these tests expect status 2)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(EDGE_POSE), "serve", "--bundle", str(bundle), "--source", "0",
                           "--http", f"127.0.0.1:{port}", "--log-level", "error"],
                          capture_output=True, text=True, env=env, timeout=60)


def test_model_that_cannot_load_is_one_error_line_and_status_2(tmp_path):
    broken = tmp_path / "bundle"
    broken.mkdir()
    (broken / "edge_pose.json").write_text("{}")  # a manifest that is no manifest
    run = _serve_until_it_fails(broken, free_port())
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-pose serve: error: ") and "edge_pose.json" in lines[0], \
        run.stderr


def test_port_in_use_is_one_error_line(tmp_path, bundle_dir):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = _serve_until_it_fails(bundle_dir, port)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"[http] cannot listen on 127.0.0.1:{port}" in lines[0], run.stderr


M = '[model]\nbundle = "{bundle}"\n'
S = '[source]\nuri = "/dev/video0"\n'


@pytest.mark.parametrize("body, key", [
    (M + "[source]\nuri = 0\nfps = nan", "[source] fps: must be a finite number, got nan"),
    (M + "[source]\nuri = 0\nreconnect_max_s = inf", "[source] reconnect_max_s: must be a finite number, got inf"),
    (M + "[source]\nuri = 0\nreconnect_min_s = 5.0\nreconnect_max_s = 1.0",
     "[source] reconnect_min_s: must be <= reconnect_max_s"),
    (M + S + "[jsonl]\nflush_s = -inf", "[jsonl] flush_s: must be a finite number"),
    (M + S + "[tracking]\nbeta = nan", "[tracking] beta: must be a finite number"),
    (M + "threads = -1\n" + S, "[model] threads: must be 0..256"),
    (M + "threads = 100000000000000000000\n" + S, "[model] threads: must be 0..256"),
    (M + S + "[persons]\nmax_people = 0", "[persons] max_people: must be 1..256"),
    (M + S + "[http]\nport = true", "[http] port: expected an integer, got True"),
    (M + S + '[http]\nhost = "[::1"', "[http] host: '[::1' is not an IP address or host name"),
    (M + S + '[http]\nhost = ""', "[http] host: empty"),
    (M + S + '[http]\nhost = "999.1.1.1"', "[http] host: '999.1.1.1' is not an IP address"),
    (M + S + "[http]\nheader_timeout_s = 0", "[http] header_timeout_s: must be > 0"),
    (S + "[model.bundle]\npath = 1", "[model] bundle: expected a string, got a table"),
    ("model = 3\n" + S, "model: expected a [model] table, got 3"),
    (M + "[[source]]\nuri = 1", "source: expected a [source] table, got an array"),
    (M + "[source]\nuri = 1.5", "[source] uri: expected a string, got 1.5"),
    (M + "[source]\nuri = 1979-05-27", "[source] uri: expected a string"),
    (M + S + '[jsonl]\npath = "nul\\u0000byte"', "[jsonl] path: contains a NUL character"),
    (M + S + '[mqtt]\nenabled = true\ntls = false\nca_file = "/etc/hostname"', "[mqtt] ca_file: set, but tls = false"),
    (M + S + '[mqtt]\nenabled = true\ntls = true\nca_file = "/no/ca.pem"', "[mqtt] ca_file: no such file /no/ca.pem"),
    (M + S + '[mqtt]\nenabled = true\npassword = "x"', "[mqtt] username: required when a password is set"),
    (M + S + '[mqtt]\nenabled = true\nusername = "u"\npassword_file = "/no/pw"', "[mqtt] password_file: cannot read"),
])
def test_check_config_rejects_bad_values_types_and_nesting(tmp_path, bundle_dir, capsys, monkeypatch, body, key):
    monkeypatch.delenv("EDGE_POSE_TOKEN", raising=False)
    bad = tmp_path / "bad.toml"
    bad.write_text(body.replace("{bundle}", str(bundle_dir)))
    code, lines = _cli(["serve", "--check-config", str(bad)], capsys)
    assert code == 2, lines
    assert all(line.startswith("edge-pose serve: error: ") for line in lines), lines
    assert not any("Traceback" in line for line in lines)
    assert any(str(bad) in line and key in line for line in lines), lines


def test_check_config_lists_every_problem_one_line_each(tmp_path, bundle_dir, capsys, monkeypatch):
    monkeypatch.delenv("EDGE_POSE_TOKEN", raising=False)
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[model]\nbundle = "{bundle_dir}"\nthreads = -2\n[source]\nuri = 0\nfps = nan\n'
                   f'reconnect_max_s = inf\n[http]\nport = "x"\n[jsonl]\npath = "{tmp_path}"\n[cams]\na = 1\n')
    code, lines = _cli(["serve", "--check-config", str(bad)], capsys)
    assert code == 2 and len(lines) == 6, lines
    for key in ("[model] threads", "[source] fps", "[source] reconnect_max_s", "[http] port", "[jsonl] path",
                "[cams]: unknown section"):
        assert sum(key in line for line in lines) == 1, (key, lines)
    assert f"{tmp_path} is a directory" in " ".join(lines)


@pytest.mark.parametrize("flags, message", [
    (["--http", "[::1"], "--http: '[::1': '[' without ']'"),
    (["--http", "[::1]x"], "--http: '[::1]x': expected ':PORT' after ']'"),
    (["--http", "[1.2.3.4]:80"], "is not an IPv6 address"),
    (["--http", "::1:8080"], "write an IPv6 address in brackets"),
    (["--http", "127.0.0.1:http"], "port must be an integer 0..65535"),
    (["--http", "bad host:80"], "is not an IP address or host name"),
    (["--mqtt", "broker:99999"], "--mqtt: 'broker:99999': port must be an integer 0..65535"),
    (["--threads", "0"], "--threads: must be >= 1, got 0"),
])
def test_flags_are_parsed_strictly(tmp_path, bundle_dir, capsys, monkeypatch, flags, message):
    """An address typo is an error, never "all interfaces" (with a token set, '[::1' once bound every one)."""
    monkeypatch.setenv("EDGE_POSE_TOKEN", "t0ken")
    code, lines = _cli(["serve", "--check-config", "/dev/null", "--bundle", str(bundle_dir), "--source", "0",
                        *flags], capsys)
    assert code == 2 and len(lines) == 1 and message in lines[0], lines


def test_good_addresses_parse(tmp_path, bundle_dir, capsys, monkeypatch):
    from edge_pose.serve.addresses import split_host_port

    assert split_host_port("[::1]:8081", "--http", 80) == ("::1", 8081)
    assert split_host_port("[::1]", "--http", 80) == ("::1", 80)
    assert split_host_port(":9000", "--http", 80) == ("127.0.0.1", 9000)
    assert split_host_port("cam-01.local:1883", "--mqtt", 1) == ("cam-01.local", 1883)
    monkeypatch.setenv("EDGE_POSE_TOKEN", "t0ken")
    code = cli_main(["serve", "--check-config", "/dev/null", "--bundle", str(bundle_dir), "--source", "0",
                     "--http", "[::1]:8081", "--jsonl", str(tmp_path / "p.jsonl"), "--threads", "2"])
    assert code == 0 and "http ::1:8081" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    ("[" * 100000 + "]" * 100000, "JSON nested too deeply (more than 64 levels)"),
    ("[" * 65 + "]" * 65, "JSON nested too deeply (more than 64 levels)"),
    ('[{"image_id": 1, "bbox": [0, 0, NaN, 5], "score": 1, "category_id": 1}]', "NaN is not a number JSON allows"),
    ('[{"image_id": 1, "bbox": [0, 0, 1e999, 5], "score": 1, "category_id": 1}]', "number 1e999 is out of range"),
    ("[" + "9" * 5000 + "]", "is too large"),
])
def test_hostile_box_files_are_one_line_not_a_traceback(tmp_path, bundle_dir, text, message):
    """A COCO detections file nested 100000 deep once crashed --check-config with a RecursionError."""
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "dets.json").write_text(text)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\nbundle = "{bundle_dir}"\n[source]\nuri = "{images}"\n'
                   f'[persons]\nboxes = "{tmp_path / "dets.json"}"\n')
    run = subprocess.run([str(EDGE_POSE), "serve", "--check-config", str(cfg)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, timeout=60)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and message in lines[0], run.stderr[-2000:]
    assert "[persons] boxes" in lines[0] and "dets.json" in lines[0]

"""Faults against the real daemon (LiteRT CPM bundle, a generated 10 fps video) with a real mosquitto and a JSON-lines
file: the broker stopped and restarted again and again (nothing lost within the buffer bound; past it every drop
counted), the JSON-lines file made unwritable (immutable with `chattr +i`, which stops root too; and "disk full" as
a file-size limit set on the running daemon with `prlimit --fsize`) and writable again, the source vanishing and
returning, SIGHUP reloads (good and bad files), and SIGTERM at any moment: exit 0 within 3 s with the sinks flushed.

The tests share one daemon and run in file order; the last one stops it and checks that every result is accounted
for: in the JSON-lines files or counted as dropped there, and received over MQTT or counted as dropped there.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from serve_env import Broker, DaemonProcess, Subscriber, free_port, get_json, http, make_video, metric, missing, \
    status_of, wait_for

TOPIC = "test/edge-pose/faults"
BUFFER = 40  # messages: a 1.5 s outage fits, a 7 s one does not
MATRIX: dict[str, dict] = {}  # fault -> figures, printed at the end (pytest -s) for the record


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        missing(f"{name} not installed (scripts/ensure-system-deps.sh)")
    return path


def write_config(path: Path, bundle, video, port, broker_port, jsonl, extra: str = "") -> None:
    path.write_text(f"""
[model]
bundle = "{bundle}"
threads = 1
[source]
uri = "{video}"
reconnect_min_s = 0.2
reconnect_max_s = 0.5
[http]
port = {port}
[mqtt]
enabled = true
port = {broker_port}
topic = "{TOPIC}"
buffer = {BUFFER}
[jsonl]
path = "{jsonl}"
max_bytes = 4000000
flush_s = 0.2
{extra}
""")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, cpm_bundle):
    work = tmp_path_factory.mktemp("serve-faults")
    video = make_video(work / "person.avi")
    broker = Broker(work / "broker").start()
    sub = Subscriber(broker.port, TOPIC, "faults-collector")
    wait_for(sub.subscribed.is_set, 10, "subscription")
    port = free_port()
    config = work / "serve.toml"
    jsonl = work / "poses.jsonl"
    write_config(config, cpm_bundle.path, video, port, broker.port, jsonl)
    daemon = DaemonProcess(["--config", str(config)], work)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: status_of(base + "/readyz") == 200, 90, "/readyz 200", daemon)
    env = {"daemon": daemon, "base": base, "broker": broker, "sub": sub, "jsonl": jsonl, "work": work,
           "config": config, "video": video, "bundle": cpm_bundle.path, "port": port, "jsonl_files": [jsonl]}
    yield env
    for f in env["jsonl_files"]:
        subprocess.run(["chattr", "-i", str(f)], capture_output=True)
    if daemon.poll() is None:
        daemon.stop(signal.SIGKILL)
    sub.close()
    broker.stop()


def _health(base):
    return get_json(base + "/healthz")[1]


def _metrics(base) -> str:
    return http(base + "/metrics")[2].decode()


def _seq(base) -> int:
    return get_json(base + "/v1/poses/latest")[1]["seq"]


def test_broker_restarted_again_and_again_loses_nothing_within_the_bound(stack):
    base, broker, sub, daemon = stack["base"], stack["broker"], stack["sub"], stack["daemon"]
    cycles = 4
    for _ in range(cycles):
        broker.stop()
        wait_for(lambda: _health(base)["sinks"]["mqtt"]["connected"] is False, 10, "the broker gone", daemon)
        time.sleep(1.5)  # ~15 results at 10 fps: within the 40-message buffer
        broker.start()
        wait_for(lambda: _health(base)["sinks"]["mqtt"]["connected"] is True, 15, "the broker back", daemon)
    last = _seq(base)
    wait_for(lambda: sub.seqs() >= set(range(1, last + 1)), 30, f"every result 1..{last} over MQTT", daemon)
    text = _metrics(base)
    assert metric(text, "edge_pose_mqtt_dropped_total") == 0
    assert _health(base)["sinks"]["mqtt"]["connects"] >= cycles + 1
    MATRIX["broker restarted x4 (1.5 s outages)"] = {"results": last, "lost": 0, "dropped": 0}


def test_broker_outage_past_the_bound_counts_every_drop(stack):
    base, broker, sub, daemon = stack["base"], stack["broker"], stack["sub"], stack["daemon"]
    broker.stop()
    wait_for(lambda: (metric(_metrics(base), "edge_pose_mqtt_dropped_total") or 0) >= 10, 30,
             "drops past the buffer bound", daemon)
    health = _health(base)
    assert health["status"] == "degraded" and any("mqtt" in p and "dropped" in p for p in health["problems"])
    assert health["sinks"]["mqtt"]["buffered"] == BUFFER
    broker.start()
    wait_for(lambda: _health(base)["sinks"]["mqtt"]["buffered"] < 5, 30, "the buffer drained", daemon)
    dropped = int(metric(_metrics(base), "edge_pose_mqtt_dropped_total"))
    last = _seq(base)
    wait_for(lambda: len({s for s in sub.seqs() if s <= last}) == last - dropped, 20,
             f"received + dropped = every result up to {last}", daemon)
    MATRIX["broker away ~7 s (past the 40-message buffer)"] = {"results": last, "lost": 0, "dropped": dropped}


def _wait_writing(base, writing: bool, daemon):
    wait_for(lambda: _health(base)["sinks"]["jsonl"]["writing"] is writing, 15,
             f"jsonl writing = {writing}", daemon)


def _check_whole_lines(path: Path) -> list[int]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} ends in a cut line"
    return [json.loads(line)["seq"] for line in data.splitlines()]


def test_jsonl_read_only_degrades_and_recovers(stack):
    """`chattr +i` makes the file immutable even for root (chmod alone does not stop root)."""
    chattr = need_tool("chattr")
    base, daemon, jsonl = stack["base"], stack["daemon"], stack["jsonl"]
    wait_for(lambda: jsonl.exists() and jsonl.stat().st_size > 0, 10, "the JSON-lines file")
    dropped0 = metric(_metrics(base), "edge_pose_jsonl_dropped_total")
    subprocess.run([chattr, "+i", str(jsonl)], check=True)
    try:
        _wait_writing(base, False, daemon)
        health = _health(base)
        assert health["status"] == "degraded"
        assert any("jsonl: not writing" in p and "Operation not permitted" in p for p in health["problems"]), health
        text = _metrics(base)
        assert metric(text, "edge_pose_jsonl_writing") == 0
        wait_for(lambda: metric(_metrics(base), "edge_pose_jsonl_dropped_total") > dropped0 + 5, 10,
                 "drops counted while read-only")
        assert status_of(base + "/readyz") == 200, "a failing sink does not stop the pipeline"
    finally:
        subprocess.run([chattr, "-i", str(jsonl)], check=True)
    _wait_writing(base, True, daemon)
    assert not any("not writing" in p for p in _health(base)["problems"])
    assert "writing" in daemon.log_text() and "again after" in daemon.log_text()
    dropped = metric(_metrics(base), "edge_pose_jsonl_dropped_total") - dropped0
    _check_whole_lines(jsonl)
    MATRIX["jsonl immutable (chattr +i) then writable"] = {"lost": 0, "dropped": int(dropped)}


def test_jsonl_disk_full_leaves_no_cut_line_and_recovers(stack):
    """"Disk full" as a file-size limit on the running daemon (prlimit --fsize): writes past it fail with EFBIG,
    a write cut short is truncated back to the last whole line."""
    prlimit = need_tool("prlimit")
    base, daemon, jsonl = stack["base"], stack["daemon"], stack["jsonl"]
    pid = str(daemon.proc.pid)
    dropped0 = metric(_metrics(base), "edge_pose_jsonl_dropped_total")
    limit = jsonl.stat().st_size + 1500  # a line or so more, then full
    assert daemon.log.stat().st_size < limit, "the daemon's own log must stay under the limit"
    subprocess.run([prlimit, "--pid", pid, f"--fsize={limit}:unlimited"], check=True)
    try:
        _wait_writing(base, False, daemon)
        health = _health(base)
        assert any("jsonl: not writing" in p and "File too large" in p for p in health["problems"]), health
        wait_for(lambda: metric(_metrics(base), "edge_pose_jsonl_dropped_total") > dropped0 + 5, 10,
                 "drops counted while full")
        assert jsonl.stat().st_size <= limit
        _check_whole_lines(jsonl)
    finally:
        subprocess.run([prlimit, "--pid", pid, "--fsize=unlimited:unlimited"], check=True)
    _wait_writing(base, True, daemon)
    _check_whole_lines(jsonl)
    dropped = metric(_metrics(base), "edge_pose_jsonl_dropped_total") - dropped0
    MATRIX["jsonl disk full (prlimit --fsize) then space"] = {"lost": 0, "dropped": int(dropped)}


def test_source_vanishing_and_returning(stack):
    base, daemon, video = stack["base"], stack["daemon"], stack["video"]
    away = video.with_name("away.avi")
    video.rename(away)
    wait_for(lambda: _health(base)["source"]["state"] == "reconnecting", 10, "the source reported gone", daemon)
    assert status_of(base + "/readyz") == 503
    time.sleep(1.0)
    away.rename(video)
    wait_for(lambda: status_of(base + "/readyz") == 200, 15, "frames again", daemon)
    MATRIX["video file renamed away and back"] = {"lost": 0, "dropped": 0,
                                                  "reconnects": _health(base)["source"]["reconnects"]}


def test_sighup_reloads_and_a_bad_file_keeps_the_old_config(stack):
    base, daemon, config, work = stack["base"], stack["daemon"], stack["config"], stack["work"]
    moved = work / "poses-after-hup.jsonl"
    write_config(config, stack["bundle"], stack["video"], stack["port"], stack["broker"].port, moved,
                 "[tracking]\nenabled = true\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: _health(base)["config"]["reloads"] == 1, 10, "the reload applied", daemon)
    stack["jsonl_files"].append(moved)
    wait_for(lambda: moved.exists() and moved.stat().st_size > 0, 10, "lines in the new JSON-lines file", daemon)
    wait_for(lambda: get_json(base + "/v1/poses/latest")[1]["people"][0].get("id") == 1, 10, "tracking ids")
    assert _health(base)["config"]["needs_restart"] == []

    good = config.read_text()
    config.write_text(good.replace("flush_s = 0.2", "flush_s = nan").replace("[tracking]", "[trackin]"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: _health(base)["config"]["last_error"], 10, "the bad reload reported", daemon)
    health = _health(base)
    assert "[jsonl] flush_s: must be a finite number" in health["config"]["last_error"]
    assert "[trackin]: unknown section" in health["config"]["last_error"]
    assert any(p.startswith("config reload failed (old config kept)") for p in health["problems"])
    assert daemon.poll() is None and status_of(base + "/readyz") == 200
    config.write_text(good.replace("threads = 1", "threads = 2"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: _health(base)["config"]["reloads"] == 2, 10, "the fixed file reloaded", daemon)
    health = _health(base)
    assert health["config"]["last_error"] == "" and health["config"]["needs_restart"] == ["[model]"]
    assert "needs a restart to take effect: [model]" in daemon.log_text()


def test_sigterm_exits_zero_quickly_and_every_result_is_accounted_for(stack):
    base, daemon, sub = stack["base"], stack["daemon"], stack["sub"]
    t0 = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log_tail()
    stop_s = time.monotonic() - t0
    assert stop_s < 3.0, f"stop took {stop_s:.1f} s"
    log = daemon.log_text()
    total = int(re.search(r"stopped in [\d.]+ s: \d+ frames read, (\d+) processed", log).group(1))
    jsonl_seqs = [s for f in stack["jsonl_files"] for s in _check_whole_lines(f)]
    assert jsonl_seqs == sorted(set(jsonl_seqs)), "each result at most once, in order"
    jsonl_dropped = int(re.search(r"jsonl: \d+ lines written to .*?, (\d+) dropped", log).group(1))
    assert len(jsonl_seqs) + jsonl_dropped == total, (len(jsonl_seqs), jsonl_dropped, total)
    mqtt_dropped, undelivered = map(int, re.search(r"mqtt: \d+ delivered, (\d+) dropped past the buffer bound, "
                                                   r"(\d+) undelivered at stop", log).groups())
    assert undelivered == 0
    wait_for(lambda: len({s for s in sub.seqs() if s <= total}) == total - mqtt_dropped, 15,
             "MQTT received + dropped = all")
    MATRIX["SIGTERM (end of run)"] = {"results": total, "jsonl written": len(jsonl_seqs),
                                      "jsonl dropped": jsonl_dropped, "mqtt received": total - mqtt_dropped,
                                      "mqtt dropped": mqtt_dropped, "lost": 0, "stop_s": round(stop_s, 2)}
    print("\nfault matrix:")
    for fault, figures in MATRIX.items():
        print(f"  {fault:48s} {json.dumps(figures)}")


@pytest.mark.parametrize("moment", ["loading the model", "first results", "broker away", "during an infer",
                                    "stream client"])
def test_sigterm_at_any_moment_exits_zero_within_3_s_with_sinks_flushed(tmp_path, cpm_bundle, moment):
    video = make_video(tmp_path / "v.avi")
    broker = Broker(tmp_path / "broker").start()
    port = free_port()
    config = tmp_path / "serve.toml"
    jsonl = tmp_path / "p.jsonl"
    write_config(config, cpm_bundle.path, video, port, broker.port, jsonl)
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        if moment == "loading the model":
            wait_for(lambda: status_of(base + "/healthz") == 200, 30, "HTTP up", daemon)
        else:
            wait_for(lambda: status_of(base + "/readyz") == 200, 90, "/readyz 200", daemon)
        if moment == "broker away":
            broker.stop()
            wait_for(lambda: _health(base)["sinks"]["mqtt"]["buffered"] > 3, 10, "results buffered", daemon)
        elif moment == "during an infer":
            import threading

            body = (tmp_path / "f.jpg")
            import cv2

            cv2.imwrite(str(body), cv2.VideoCapture(str(video)).read()[1])
            data = body.read_bytes()
            for _ in range(3):
                threading.Thread(target=lambda: _quiet(lambda: http(base + "/v1/infer", data=data, method="POST",
                                                                    headers={"Content-Type": "image/jpeg"})),
                                 daemon=True).start()
        elif moment == "stream client":
            import socket

            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /v1/poses/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(lambda: metric(_metrics(base), "edge_pose_sse_clients") == 1, 10, "stream client")
        t0 = time.monotonic()
        assert daemon.stop(signal.SIGTERM) == 0, daemon.log_tail()
        stop_s = time.monotonic() - t0
        assert stop_s < 3.0, f"{moment}: stop took {stop_s:.1f} s"
        log = daemon.log_text()
        if moment != "loading the model" or jsonl.exists():
            written = [json.loads(line)["seq"] for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
            assert f"jsonl: {len(written)} lines written" in log, log[-2000:]
            assert written == list(range(1, len(written) + 1))
    finally:
        if daemon.poll() is None:
            daemon.stop(signal.SIGKILL)
        broker.stop()


def _quiet(fn):
    try:
        fn()
    except OSError:
        pass

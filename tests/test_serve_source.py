"""`edge-pose serve` on an image directory with the real LiteRT CPM bundle: a source that vanishes (directory
emptied) is reported and reconnected; a broker that is away from the start fills the bounded MQTT buffer and every
dropped message is counted (received + dropped = all); the bearer token guards the API but not the probes; SIGINT
stops with status 0.
"""
from __future__ import annotations

import signal

import cv2
import pytest

from serve_env import Broker, DaemonProcess, Subscriber, free_port, get_json, http, metric, person_frames, status_of, \
    wait_for

TOKEN = "s3cret-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOPIC = "test/edge-pose/images"
BUFFER = 5


@pytest.fixture()
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(person_frames(n=3)):
        cv2.imwrite(str(folder / f"frame{i:02d}.png"), frame)
    return folder


def test_vanished_source_reconnects_and_mqtt_drops_are_counted(tmp_path, image_dir, cpm_bundle):
    broker = Broker(tmp_path / "broker").start()
    sub = Subscriber(broker.port, TOPIC, "test-images")
    wait_for(sub.subscribed.is_set, 10, "subscription")
    broker.stop()  # the persistent session (subscription) survives; the daemon starts with no broker

    config = tmp_path / "serve.toml"
    config.write_text(f"[source]\nfps = 10\nreconnect_min_s = 0.2\nreconnect_max_s = 0.5\n"
                      f"[mqtt]\nbuffer = {BUFFER}\n[log]\nlevel = \"debug\"\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = DaemonProcess(["--config", str(config), "--bundle", str(cpm_bundle.path), "--source", str(image_dir),
                            "--http", f"127.0.0.1:{port}", "--mqtt", f"127.0.0.1:{broker.port}", "--topic", TOPIC],
                           tmp_path, env={"EDGE_POSE_TOKEN": TOKEN})
    try:
        wait_for(lambda: status_of(base + "/readyz") == 200, 90, "/readyz 200", daemon)

        # the token guards data, not probes or the page
        assert http(base + "/v1/poses/latest")[0] == 401
        assert http(base + "/v1/poses/latest", headers={"Authorization": "Bearer wrong"})[0] == 401
        status, latest = get_json(base + "/v1/poses/latest", AUTH)
        assert status == 200 and len(latest["people"][0]["keypoints"]) == 14  # CPM: 14 AIC joints
        assert http(base + "/healthz")[0] == 200 and http(base + "/")[0] == 200

        # a broker away from the start: the bounded buffer fills, the overflow is counted and reported
        wait_for(lambda: (_metric(base, "edge_pose_mqtt_dropped_total") or 0) >= 3, 20, "MQTT drops counted")
        health = get_json(base + "/healthz")[1]
        assert health["status"] == "degraded" and health["sinks"]["mqtt"]["buffered"] == BUFFER
        assert any("mqtt" in p and "dropped" in p for p in health["problems"])

        # the source vanishes (directory emptied): reported, then reconnected when the images return
        parked = tmp_path / "parked"
        parked.mkdir()
        for f in sorted(image_dir.iterdir()):
            f.rename(parked / f.name)
        wait_for(lambda: "no images" in get_json(base + "/healthz")[1]["source"]["last_error"], 10,
                 "/healthz reporting the source lost", daemon)
        health = get_json(base + "/healthz")[1]
        assert health["source"]["state"] == "reconnecting" and health["status"] == "degraded"
        assert status_of(base + "/readyz") == 503
        for f in sorted(parked.iterdir()):
            f.rename(image_dir / f.name)
        wait_for(lambda: get_json(base + "/healthz")[1]["source"]["reconnects"] >= 1, 10, "source reconnected",
                 daemon)
        processed = get_json(base + "/healthz")[1]["pipeline"]["processed"]
        wait_for(lambda: get_json(base + "/healthz")[1]["pipeline"]["processed"] > processed + 2, 10,
                 "frames flowing again")
        assert _metric(base, "edge_pose_source_reconnects_total") >= 1
        assert "reconnected" in daemon.log_text()

        # the broker returns: the buffered (newest) messages and all later ones arrive; the dropped are the oldest
        broker.start()
        wait_for(lambda: len(sub.seqs()) >= BUFFER + 2, 30, "MQTT delivery after the broker returned")
        dropped = int(_metric(base, "edge_pose_mqtt_dropped_total"))
        upto = max(sub.seqs())
        wait_for(lambda: set(range(dropped + 1, upto + 1)) <= sub.seqs(), 10,
                 f"every kept message: dropped {dropped}, got {sorted(sub.seqs())}, delivered "
                 f"{_metric(base, 'edge_pose_mqtt_delivered_total')}; broker log: "
                 f"{(tmp_path / 'broker' / 'mosquitto.log').read_text()[-3000:]}")
        assert min(sub.seqs()) == dropped + 1, "received + dropped must account for every result"

        assert daemon.stop(signal.SIGINT) == 0, daemon.log_tail()
        assert "SIGINT: stopping" in daemon.log_text()
    finally:
        if daemon.poll() is None:
            daemon.stop(signal.SIGKILL)
        sub.close()
        broker.stop()


def _metric(base: str, name: str):
    return metric(http(base + "/metrics", headers=AUTH)[2].decode(), name)

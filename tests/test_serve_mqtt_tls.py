"""MQTT over TLS with a username and password, against a real mosquitto configured by the test: a CA and a server
certificate for 127.0.0.1 made with openssl, a password file made with mosquitto_passwd, a TLS-only listener. The
daemon (LiteRT CPM bundle, a generated video) delivers over it; with a wrong password or an untrusted CA it keeps
running, says why in /healthz and counts the failures in /metrics.
"""
from __future__ import annotations

import signal

import pytest

from serve_env import Broker, DaemonProcess, Subscriber, free_port, get_json, http, make_tls_material, make_video, \
    metric, status_of, wait_for

TOPIC = "test/edge-pose/tls"
USER, PASSWORD = "edge-pose", "correct horse battery"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    work = tmp_path_factory.mktemp("mqtt-tls")
    material = make_tls_material(work / "pki")
    other = make_tls_material(work / "pki-other", name="other")  # a CA the broker's certificate is not from
    broker = Broker(work / "broker", tls=material, users={USER: PASSWORD, "reader": "r"}).start()
    yield {"work": work, "broker": broker, "pki": material, "other": other, "video": make_video(work / "p.avi")}
    broker.stop()


def _daemon(env, tmp_path, cpm_bundle, mqtt: str) -> tuple[DaemonProcess, str]:
    port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(f"""
[model]
bundle = "{cpm_bundle.path}"
threads = 1
[source]
uri = "{env['video']}"
[http]
port = {port}
[mqtt]
enabled = true
port = {env['broker'].port}
topic = "{TOPIC}"
{mqtt}
""")
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: status_of(base + "/readyz") == 200, 90, "/readyz 200", daemon)
    return daemon, base


def test_delivers_over_tls_with_a_password_file(tls_broker, tmp_path, cpm_bundle):
    env = tls_broker
    pw_file = tmp_path / "mqtt-password"
    pw_file.write_text(PASSWORD + "\n")
    sub = Subscriber(env["broker"].port, TOPIC, "tls-reader", ca=env["pki"]["ca"], login=("reader", "r"))
    wait_for(sub.subscribed.is_set, 15, "TLS subscription")
    daemon, base = _daemon(env, tmp_path, cpm_bundle, f'tls = true\nca_file = "{env["pki"]["ca"]}"\n'
                                                       f'username = "{USER}"\npassword_file = "{pw_file}"')
    try:
        wait_for(lambda: len(sub.seqs()) >= 5, 30, "5 results over MQTT/TLS", daemon)
        health = get_json(base + "/healthz")[1]
        assert health["status"] == "ok", health
        assert health["sinks"]["mqtt"]["connected"] is True and health["sinks"]["mqtt"]["tls"] is True
        assert len(sub.messages[0]["people"][0]["keypoints"]) == 14
        assert daemon.stop() == 0
        assert "0 undelivered at stop" in daemon.log_text()
    finally:
        if daemon.poll() is None:
            daemon.stop(signal.SIGKILL)
        sub.close()


@pytest.mark.parametrize("case", ["wrong password", "untrusted CA"])
def test_login_or_certificate_failure_is_reported_and_the_daemon_keeps_running(tls_broker, tmp_path, cpm_bundle,
                                                                               case):
    env = tls_broker
    if case == "wrong password":
        mqtt, expect = (f'tls = true\nca_file = "{env["pki"]["ca"]}"\nusername = "{USER}"\npassword = "wrong"',
                        "Not authorized")
    else:
        mqtt, expect = (f'tls = true\nca_file = "{env["other"]["ca"]}"\nusername = "{USER}"\n'
                        f'password = "{PASSWORD}"', "CERTIFICATE_VERIFY_FAILED")
    daemon, base = _daemon(env, tmp_path, cpm_bundle, mqtt)
    try:
        wait_for(lambda: expect in get_json(base + "/healthz")[1]["sinks"]["mqtt"]["last_error"], 20,
                 f"/healthz naming the failure ({expect})", daemon)
        health = get_json(base + "/healthz")[1]
        assert health["status"] == "degraded" and any(expect in p for p in health["problems"]), health
        assert health["sinks"]["mqtt"]["connected"] is False
        text = http(base + "/metrics")[2].decode()
        assert metric(text, "edge_pose_mqtt_connect_failures_total") >= 1
        assert metric(text, "edge_pose_mqtt_connected") == 0
        processed = health["pipeline"]["processed"]
        wait_for(lambda: get_json(base + "/healthz")[1]["pipeline"]["processed"] > processed + 3, 15,
                 "frames still processed", daemon)
        assert status_of(base + "/readyz") == 200
        assert daemon.stop() == 0
        assert expect in daemon.log_text()
    finally:
        if daemon.poll() is None:
            daemon.stop(signal.SIGKILL)

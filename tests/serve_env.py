"""Real parts for the serve tests: a generated video, a mosquitto broker, an MQTT subscriber, the daemon process.

Nothing here is a fake: the daemon is `.venv/bin/edge-pose serve` as a subprocess, the broker is Debian's mosquitto
(persistent, so a subscriber's session and queued QoS-1 messages survive a broker restart), the browser is Chromium.
"""
from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from shared import ROOT, coco_mini, missing

EDGE_POSE = ROOT / ".venv" / "bin" / "edge-pose"
MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")
OPENSSL = Path("/usr/bin/openssl")
CHROMIUM = Path("/usr/bin/chromium")
PERSON_IMAGE = "000000000785.jpg"  # one skier filling the frame: whole-frame boxes fit


def need_binary(path: Path) -> Path:
    """Skip when a system binary is missing, except under CI=true where that is a failure."""
    if not path.exists():
        missing(f"{path} not installed (apt-get install {path.name}; scripts/ensure-system-deps.sh)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, proc=None, poll: float = 0.1):
    """Poll until predicate() is truthy; fail with `what` (and the daemon's log) on timeout or daemon exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"daemon exited ({proc.returncode}) while waiting for {what}:\n{proc.log_tail()}")
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}" + (f":\n{proc.log_tail()}" if proc else ""))


def person_frames(height: int = 320, width: int = 240, n: int = 20) -> list[np.ndarray]:
    """Frames cut around the person of a coco-mini image, swaying a few pixels (a moving, trackable person)."""
    import cv2

    image = cv2.imread(str(coco_mini() / PERSON_IMAGE))
    crop = cv2.resize(image[:, 230:530], (width, height))
    frames = []
    for i in range(n):
        shift = np.float32([[1, 0, round(6 * np.sin(2 * np.pi * i / n))], [0, 1, 0]])
        frames.append(cv2.warpAffine(crop, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    return frames


def make_video(path: Path, fps: float = 10.0) -> Path:
    import cv2

    frames = person_frames()
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    assert cv2.VideoCapture(str(path)).isOpened(), f"OpenCV cannot read back {path}"
    return path


def make_tls_material(folder: Path, name: str = "test") -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (EC P-256, two days), made with the openssl CLI."""
    need_binary(OPENSSL)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / f"{name}-{n}" for n in ("ca.key", "ca.crt", "server.key", "server.csr",
                                                                     "server.crt"))
    ext = folder / f"{name}-server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = critical, CA:FALSE\n"
                   "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
                   "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run([str(OPENSSL), *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", f"/CN={name} test CA")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}


class Broker:
    """mosquitto on a loopback port, with persistence so sessions survive stop()/start(); optionally TLS-only with
    a password file (users: {name: password}, hashed by mosquitto_passwd)."""

    def __init__(self, workdir: Path, port: int | None = None, tls: dict | None = None, users: dict | None = None):
        need_binary(MOSQUITTO)
        self.port = port or free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        # `user`: as root, mosquitto would switch to user "mosquitto", which cannot write the persistence file here
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.dir}/",
                 "autosave_interval 1", f"user {getpass.getuser()}"]
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        if users:
            need_binary(MOSQUITTO_PASSWD)
            pw = self.dir / "passwords"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run([str(MOSQUITTO_PASSWD), "-b", str(pw), user, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "mosquitto.log", "ab"))

        def accepting():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(accepting, 10, f"mosquitto on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class Subscriber:
    """paho subscriber with a persistent session (QoS 1): collects result sequence numbers from a topic."""

    def __init__(self, port: int, topic: str, client_id: str, ca: Path | None = None,
                 login: tuple[str, str] | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 2)
        if ca is not None:
            c.tls_set(ca_certs=str(ca))
        if login is not None:
            c.username_pw_set(*login)
        c.connect_async("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append(json.loads(msg.payload))

    def seqs(self) -> set[int]:
        with self._lock:
            return {m["seq"] for m in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class DaemonProcess:
    """`edge-pose serve ...` as a subprocess with its log in a file."""

    def __init__(self, args: list[str], workdir: Path, env: dict | None = None):
        self.log = workdir / "daemon.log"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen([str(EDGE_POSE), "-v", "serve", *args], stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, env=full_env, cwd=workdir)
        self.returncode = None

    def poll(self):
        self.returncode = self.proc.poll()
        return self.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"daemon did not stop within {timeout} s of {sig.name}:\n{self.log_tail()}")
        self.returncode = self.proc.returncode
        return self.returncode


def http(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None,
         timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """(status, headers, body) for any status (4xx/5xx included)."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def status_of(url: str) -> int:
    """HTTP status, or 0 while nothing listens yet."""
    try:
        return http(url, timeout=2)[0]
    except OSError:
        return 0


def get_json(url: str, headers: dict | None = None) -> tuple[int, dict]:
    status, _, body = http(url, headers=headers)
    return status, json.loads(body)


def metric(text: str, name: str, labels: str = "") -> float | None:
    """Value of one sample in Prometheus text (labels: the exact `{...}` text, or empty)."""
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def chromium(args: list[str], workdir: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    need_binary(CHROMIUM)
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={workdir / 'chrome-profile'}"]
    return subprocess.run(base + args, capture_output=True, timeout=timeout, cwd=workdir)

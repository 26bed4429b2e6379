#!/usr/bin/env python3
"""Soak `edge-pose serve`: the real daemon on a looping video, a real mosquitto (restarted now and then), HTTP
clients of every kind (pollers, an event stream, POST /v1/infer, a slowloris), for a given duration. Samples the
daemon's RSS, open file descriptors and threads every few seconds, prints a table as it goes, writes JSON, and gives
a verdict: flat when, after the warm-up, the median of the last samples is within 5% of the median of the first
(fds and threads: within 5% or 2, whichever is larger, since one HTTP handler thread is a whole unit).

    python scripts/soak.py --bundle BUNDLE_DIR [--duration 600] [--interval 5] [--json soak.json]

Exit status 0 when flat and nothing was lost (MQTT received + dropped + undelivered at stop = results, every term
counted by the daemon), 1 otherwise, 2 on bad usage.
Needs psutil and paho-mqtt (both in the dev/serve extras) and /usr/sbin/mosquitto (scripts/ensure-system-deps.sh).
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = "/usr/sbin/mosquitto"
PERSON_IMAGE = "000000000785.jpg"  # coco-mini: one skier filling the frame
TOPIC = "soak/edge-pose/poses"
TOLERANCE = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_video(path: Path, fps: float = 10.0, n: int = 40) -> Path:
    """A person swaying a few pixels (from ../shared coco-mini if there, else a plain synthetic frame)."""
    import cv2
    import numpy as np

    shared = Path(os.environ.get("EDGE_POSE_SHARED", ROOT.parent / "shared")) / "data" / "coco-mini" / PERSON_IMAGE
    image = cv2.imread(str(shared)) if shared.exists() else None
    base = cv2.resize(image[:, 230:530], (240, 320)) if image is not None else \
        np.full((320, 240, 3), 128, np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (240, 320))
    for i in range(n):
        shift = np.float32([[1, 0, round(6 * np.sin(2 * np.pi * i / n))], [0, 1, 0]])
        writer.write(cv2.warpAffine(base, shift, (240, 320), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return path


class Broker:
    def __init__(self, folder: Path):
        self.port, self.dir, self.proc = free_port(), folder, None
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 5\nuser {getpass.getuser()}\n")

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "mosquitto.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("soak: mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Collector:
    """A persistent-session QoS-1 subscriber: which result numbers arrived."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.seqs: set[int] = set()
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-collector", clean_session=False)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(TOPIC, qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._message
        c.reconnect_delay_set(1, 2)
        c.connect_async("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _message(self, client, userdata, msg):
        seq = json.loads(msg.payload)["seq"]
        with self.lock:
            self.seqs.add(seq)

    def count_upto(self, last: int) -> int:
        with self.lock:
            return sum(1 for s in self.seqs if s <= last)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def get(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


class Clients:
    """HTTP load of every kind, in threads, until stop(): counts requests and failures."""

    def __init__(self, base: str, port: int, jpeg: bytes):
        self.base, self.port, self.jpeg = base, port, jpeg
        self.halt = threading.Event()
        self.requests = 0
        self.failures = 0
        self.events = 0
        self.threads = [threading.Thread(target=f, daemon=True) for f in
                        (self._poller, self._poller, self._stream, self._infer, self._slowloris)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(15)

    def _count(self, ok: bool) -> None:
        self.requests += 1
        self.failures += not ok

    def _poller(self) -> None:
        routes = ("/v1/poses/latest", "/healthz", "/readyz", "/metrics", "/v1/frame.jpg", "/v1/info")
        i = 0
        while not self.halt.wait(0.2):
            try:
                status, _ = get(self.base + routes[i % len(routes)])
                self._count(status == 200)
            except OSError:
                self._count(False)
            i += 1

    def _stream(self) -> None:
        while not self.halt.is_set():
            try:
                with urllib.request.urlopen(self.base + "/v1/poses/stream", timeout=10) as r:
                    while not self.halt.is_set():
                        line = r.readline()
                        if not line:
                            break
                        self.events += line.startswith(b"data: ")
            except OSError:
                self.halt.wait(1)

    def _infer(self) -> None:
        while not self.halt.wait(1.0):
            try:
                status, _ = get(self.base + "/v1/infer", self.jpeg, {"Content-Type": "image/jpeg"})
                self._count(status in (200, 503))  # 503 = busy, by design
            except OSError:
                self._count(False)

    def _slowloris(self) -> None:
        """A client trickling header bytes: the daemon must cut it (header deadline) every time."""
        while not self.halt.wait(5.0):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\n")
                    while not self.halt.is_set():
                        s.sendall(b"X")
                        try:
                            if s.recv(1) == b"":
                                break
                        except TimeoutError:
                            continue
            except OSError:
                pass


def sample(proc, base: str, t0: float) -> dict:
    import psutil

    p = psutil.Process(proc.pid)
    try:
        text = get(base + "/metrics")[1].decode()
    except OSError:
        text = ""
    return {"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(p.memory_info().rss / 2 ** 20, 1),
            "fds": p.num_fds(), "threads": p.num_threads(),
            "processed": int(metric(text, "edge_pose_frames_processed_total")),
            "mqtt_delivered": int(metric(text, "edge_pose_mqtt_delivered_total")),
            "mqtt_dropped": int(metric(text, "edge_pose_mqtt_dropped_total")),
            "jsonl_written": int(metric(text, "edge_pose_jsonl_written_total")),
            "sse_clients": int(metric(text, "edge_pose_sse_clients"))}


def verdict(samples: list[dict], warmup_s: float) -> dict:
    """First vs last window (medians) after the warm-up, per resource."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 4:
        return {"flat": False, "reason": f"only {len(after)} samples after the {warmup_s:.0f} s warm-up"}
    k = max(2, len(after) // 5)
    out: dict = {"flat": True, "window_samples": k}
    for key, slack in (("rss_mb", 0.0), ("fds", 2), ("threads", 2)):
        first = statistics.median(s[key] for s in after[:k])
        last = statistics.median(s[key] for s in after[-k:])
        allowed = max(first * TOLERANCE, slack)
        ok = last - first <= allowed
        out[key] = {"first": first, "last": last, "growth": round(last - first, 2),
                    "growth_pct": round(100.0 * (last - first) / first, 2) if first else 0.0,
                    "min": min(s[key] for s in samples), "max": max(s[key] for s in samples), "flat": ok}
        out["flat"] &= ok
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="pose bundle directory for the daemon")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds to run (default 600)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds ignored by the verdict (default 15%%)")
    ap.add_argument("--broker-restart-every", type=float, default=120.0, help="seconds; 0 = never")
    ap.add_argument("--threads", type=int, default=1, help="runtime threads for the daemon")
    ap.add_argument("--json", default="soak.json", help="where to write the samples and the verdict")
    ap.add_argument("--workdir", default=None, help="folder for the video, logs, JSON lines (default: temporary)")
    args = ap.parse_args(argv)
    if not (Path(args.bundle) / "edge_pose.json").is_file():
        print(f"soak: {args.bundle}: not a bundle (no edge_pose.json)", file=sys.stderr)
        return 2
    if not Path(MOSQUITTO).exists():
        print(f"soak: {MOSQUITTO} missing (scripts/ensure-system-deps.sh)", file=sys.stderr)
        return 2
    warmup = args.warmup if args.warmup is not None else 0.15 * args.duration
    import tempfile

    import cv2

    work = Path(args.workdir or tempfile.mkdtemp(prefix="edge-pose-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    video = make_video(work / "person.avi")
    jpeg = cv2.imencode(".jpg", cv2.VideoCapture(str(video)).read()[1])[1].tobytes()
    broker = Broker(work / "broker")
    broker.start()
    collector = Collector(broker.port)
    collector.subscribed.wait(10)
    port = free_port()
    config = work / "serve.toml"
    config.write_text(f'[model]\nbundle = "{Path(args.bundle).resolve()}"\nthreads = {args.threads}\n'
                      f'[source]\nuri = "{video}"\n[tracking]\nenabled = true\n'
                      f'[http]\nport = {port}\nheader_timeout_s = 3.0\n'
                      f'[mqtt]\nenabled = true\nport = {broker.port}\ntopic = "{TOPIC}"\nbuffer = 2000\n'
                      f'[jsonl]\npath = "{work / "poses.jsonl"}"\nmax_bytes = 1000000\nbackups = 3\n')
    edge_pose = shutil.which("edge-pose", path=str(Path(sys.executable).parent)) or "edge-pose"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    log = open(work / "daemon.log", "wb")
    proc = subprocess.Popen([edge_pose, "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if get(base + "/readyz", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None:
            print(f"soak: daemon exited ({proc.returncode}); see {work / 'daemon.log'}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    clients = Clients(base, port, jpeg)
    clients.start()
    print(f"soak: {args.duration:.0f} s, sample every {args.interval:.0f} s, warm-up {warmup:.0f} s, "
          f"broker restart every {args.broker_restart_every:.0f} s; work dir {work}", flush=True)
    header = f"{'t_s':>7} {'rss_mb':>8} {'fds':>5} {'threads':>7} {'processed':>9} {'mqtt_ok':>8} " \
             f"{'mqtt_drop':>9} {'jsonl':>7} {'http_req':>8} {'http_fail':>9}"
    print(header, flush=True)
    samples = []
    t0 = time.monotonic()
    next_restart = args.broker_restart_every or float("inf")
    try:
        while time.monotonic() - t0 < args.duration:
            time.sleep(max(0.0, args.interval - (time.monotonic() - t0) % args.interval))
            if proc.poll() is not None:
                print(f"soak: daemon exited ({proc.returncode}) during the soak", file=sys.stderr)
                return 1
            s = sample(proc, base, t0)
            s.update(http_requests=clients.requests, http_failures=clients.failures, sse_events=clients.events)
            samples.append(s)
            print(f"{s['t_s']:>7.0f} {s['rss_mb']:>8.1f} {s['fds']:>5} {s['threads']:>7} {s['processed']:>9} "
                  f"{s['mqtt_delivered']:>8} {s['mqtt_dropped']:>9} {s['jsonl_written']:>7} "
                  f"{s['http_requests']:>8} {s['http_failures']:>9}", flush=True)
            if time.monotonic() - t0 >= next_restart and time.monotonic() - t0 < args.duration - 15:
                # (not near the end: a broker down at stop leaves messages undelivered by design)
                broker.stop()
                time.sleep(2.0)
                broker.start()
                next_restart += args.broker_restart_every
    finally:
        clients.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        broker_alive = broker.proc is not None and broker.proc.poll() is None
    text = (work / "daemon.log").read_text(errors="replace")
    m = re.search(r"stopped in ([\d.]+) s: \d+ frames read, (\d+) processed", text)
    results = int(m.group(2)) if m else -1
    d = re.search(r"mqtt: (\d+) delivered, (\d+) dropped past the buffer bound, (\d+) undelivered at stop", text)
    mqtt_dropped = int(d.group(2)) if d else -1
    undelivered = int(d.group(3)) if d else -1  # left in the buffer at stop (counted and logged by the daemon)
    received = 0
    if broker_alive and results > 0:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and \
                collector.count_upto(results) < results - mqtt_dropped - undelivered:
            time.sleep(0.2)
        received = collector.count_upto(results)
    collector.close()
    broker.stop()
    result = verdict(samples, warmup)
    lost = results - mqtt_dropped - undelivered - received if min(results, mqtt_dropped, undelivered) >= 0 else None
    summary = {"duration_s": args.duration, "interval_s": args.interval, "warmup_s": warmup,
               "exit_status": code, "stop_s": float(m.group(1)) if m else None, "results": results,
               "mqtt_received": received, "mqtt_dropped": mqtt_dropped, "mqtt_undelivered_at_stop": undelivered,
               "mqtt_lost": lost,
               "http_requests": clients.requests, "http_failures": clients.failures, "sse_events": clients.events,
               "verdict": result, "samples": samples, "workdir": str(work)}
    Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\n{'resource':>8} {'first':>8} {'last':>8} {'growth':>8} {'%':>7} {'min':>7} {'max':>7}  flat")
    for key in ("rss_mb", "fds", "threads"):
        r = result.get(key)
        if r:
            print(f"{key:>8} {r['first']:>8} {r['last']:>8} {r['growth']:>8} {r['growth_pct']:>7} {r['min']:>7} "
                  f"{r['max']:>7}  {'yes' if r['flat'] else 'NO'}")
    print(f"results {results}, MQTT received {received} + dropped {mqtt_dropped} + undelivered at stop "
          f"{undelivered} (lost {lost}); HTTP "
          f"{clients.requests} requests, {clients.failures} failed; {clients.events} stream events; "
          f"daemon exit {code}")
    ok = result["flat"] and code == 0 and lost == 0
    print(f"verdict: {'FLAT' if result['flat'] else 'NOT FLAT'} (RSS within {TOLERANCE:.0%}, fds/threads within "
          f"{TOLERANCE:.0%} or 2, after {warmup:.0f} s warm-up){'' if ok else '; FAILED'}; JSON: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

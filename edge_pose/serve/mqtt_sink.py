"""MQTT sink (paho-mqtt 2.x): results published at QoS 1 through a bounded offline buffer.

paho keeps every QoS>0 message it was handed until the broker acknowledges it, resending after a reconnect, but its
queue has no useful bound. So this sink hands paho at most `window` messages at a time and keeps the rest in its own
buffer; `buffer` bounds buffered + in flight. When the broker is away the buffer fills; past the bound the OLDEST
message is dropped and counted (metrics, health, log), so nothing is lost silently. A message counts as delivered
when the broker acknowledges it (PUBACK).

on_publish runs inside paho's lock, so it only appends to a deque; the sink thread does the bookkeeping.

TLS (`tls`, `ca_file`, optional client `cert_file`/`key_file`) verifies the broker's certificate and host name;
username and password go inside the TLS session. A refused login or a failed TLS handshake is not fatal: the sink
keeps retrying (1 to 5 s apart), counts every failure and names the last one in /healthz and the log.
"""
from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time

from edge_pose.errors import EdgePoseError

log = logging.getLogger("edge_pose.serve.mqtt")


class MqttSink:
    name = "mqtt"

    def __init__(self, host: str, port: int, topic: str, qos: int = 1, client_id: str = "", username: str = "",
                 password: str = "", keepalive_s: int = 30, buffer: int = 1000, window: int = 20,
                 tls: dict | None = None):
        self.host, self.port, self.topic, self.qos = host, port, topic, qos
        self.client_id = client_id or f"edge-pose-{socket.gethostname()}-{os.getpid()}"
        self._auth = (username, password)
        self.keepalive_s = keepalive_s
        self.tls = tls  # None, or {"ca_file", "cert_file", "key_file"} (empty strings: not given)
        self.connect_failures = 0
        self.bound, self.window = buffer, max(1, min(window, buffer))
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: collections.deque = collections.deque()  # (seq, line) not yet handed to paho
        self._inflight: dict[int, tuple[int, str]] = {}  # mid -> (seq, line) handed to paho, not yet acked
        self._acked: collections.deque = collections.deque()  # mids from on_publish
        self.connected = False
        self.delivered = 0
        self.dropped = 0
        self.last_drop_time = 0.0
        self.connects = 0
        self.last_error = ""
        self.undelivered_at_stop = 0
        self._client = None
        self._thread = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)

    @classmethod
    def from_config(cls, m) -> "MqttSink":
        tls = {"ca_file": m.ca_file, "cert_file": m.cert_file, "key_file": m.key_file} if m.tls else None
        return cls(m.host, m.port, m.topic, m.qos, m.client_id, m.username, m.password, m.keepalive_s, m.buffer,
                   tls=tls)

    # paho callbacks (network thread) ------------------------------------------------------------------------
    def _connect_failed(self, message: str) -> None:
        self.connect_failures += 1
        repeat = message == self.last_error
        self.last_error = message
        if not repeat or self.connect_failures % 100 == 0:  # one line per new reason, not one per retry
            log.warning("mqtt: %s:%d: %s (failure %d; retrying)", self.host, self.port, message,
                        self.connect_failures)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self._connect_failed(f"broker refused connection: {reason_code}")
            return
        self.connected = True
        self.connects += 1
        log.info("mqtt: connected to %s:%d (connection %d); %d messages buffered", self.host, self.port,
                 self.connects, self.buffered())
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        was = self.connected
        self.connected = False
        if not self._stop.is_set() and was:  # a refused login keeps its own, more useful, reason
            self.last_error = f"disconnected: {reason_code}"
            if was:
                log.warning("mqtt: lost %s:%d (%s); buffering up to %d messages", self.host, self.port,
                            reason_code, self.bound)

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        self._acked.append(mid)
        self._wake.set()

    # public ------------------------------------------------------------------------------------------------
    def start(self) -> "MqttSink":
        import paho.mqtt.client as mqtt

        sink = self

        class Client(mqtt.Client):
            def reconnect(self):  # paho's loop swallows the reason (TLS, refused, DNS): record it first
                try:
                    return super().reconnect()
                except OSError as exc:
                    sink._connect_failed(f"cannot connect: {type(exc).__name__}: {exc}")
                    raise

        client = Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311,
                        clean_session=True)
        if self.tls is not None:
            import ssl

            try:
                ctx = ssl.create_default_context(cafile=self.tls["ca_file"] or None)
                if self.tls["cert_file"]:
                    ctx.load_cert_chain(self.tls["cert_file"], self.tls["key_file"] or None)
            except (OSError, ValueError) as exc:  # garbage in a PEM file the config check could only open
                raise EdgePoseError(f"[mqtt] ca_file/cert_file/key_file: cannot load for TLS "
                                    f"({type(exc).__name__}: {exc})") from None
            client.tls_set_context(ctx)
        if self._auth[0]:
            client.username_pw_set(self._auth[0], self._auth[1] or None)
        client.on_connect, client.on_disconnect, client.on_publish = (
            self._on_connect, self._on_disconnect, self._on_publish)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.max_inflight_messages_set(self.window)
        client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        client.loop_start()
        self._client = client
        self._thread.start()
        return self

    def buffered(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._inflight)

    def submit(self, seq: int, line: str) -> None:
        """Never blocks the pipeline: past the bound, the oldest not-yet-handed message is dropped (counted)."""
        with self._lock:
            if self._stop.is_set():  # published after close(): counted with what was left undelivered
                self.undelivered_at_stop += 1
                return
            if len(self._pending) + len(self._inflight) >= self.bound:
                if self._pending:
                    old_seq, _ = self._pending.popleft()
                else:
                    old_seq = seq  # everything is in flight: the newest is the one that cannot be kept
                self.dropped += 1
                self.last_drop_time = time.time()
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("mqtt: offline buffer full (%d); dropped result %d (%d dropped so far)",
                                self.bound, old_seq, self.dropped)
                if old_seq == seq:
                    return
            self._pending.append((seq, line))
        self._wake.set()

    def _reconcile(self) -> None:
        with self._lock:
            while self._acked:
                if self._inflight.pop(self._acked.popleft(), None) is not None:
                    self.delivered += 1

    def _pump(self) -> None:
        import paho.mqtt.client as mqtt

        while self.connected:
            with self._lock:
                if not self._pending or len(self._inflight) >= self.window:
                    return
                seq, line = self._pending.popleft()
                info = self._client.publish(self.topic, line, qos=self.qos)
                if self.qos > 0 and info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self._inflight[info.mid] = (seq, line)  # paho keeps it until acked, resending on reconnect
                elif self.qos == 0 and info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self._inflight[info.mid] = (seq, line)
                else:
                    self._pending.appendleft((seq, line))
                    self.last_error = f"publish failed: {mqtt.error_string(info.rc)}"
                    return
            self._reconcile()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            self._reconcile()
            self._pump()
        self._reconcile()

    def maintain(self) -> None:
        pass

    def close(self, timeout: float = 3.0) -> None:
        """Try to deliver what is buffered (up to timeout s while connected), then disconnect and report the rest."""
        deadline = time.monotonic() + timeout
        while self.buffered() and self.connected and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self._reconcile()
        self.undelivered_at_stop += self.buffered()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self.undelivered_at_stop:
            log.warning("mqtt: %d buffered messages not delivered at stop (broker %s)", self.undelivered_at_stop,
                        "unreachable" if not self.connected else "slow")
        log.info("mqtt: %d delivered, %d dropped past the buffer bound, %d undelivered at stop", self.delivered,
                 self.dropped, self.undelivered_at_stop)

    def status(self) -> dict:
        return {"broker": f"{self.host}:{self.port}", "topic": self.topic, "qos": self.qos,
                "tls": self.tls is not None, "connected": self.connected, "connects": self.connects,
                "connect_failures": self.connect_failures, "delivered": self.delivered,
                "buffered": self.buffered(), "buffer_bound": self.bound, "dropped": self.dropped,
                "last_drop_time": self.last_drop_time,
                "last_error": self.last_error}

"""Lifecycle of `edge-pose serve`: start HTTP first (probes answer while the model loads), load the model, start the
sinks, the capture and the pipeline; on SIGTERM/SIGINT stop capture, drain the pipeline, end streams, flush and close
the sinks (reporting anything undelivered), stop HTTP, and return 0. A second signal, or a stop that hangs past
STOP_DEADLINE_S, exits at once with status 1 rather than leave a unit stuck in "deactivating".
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import SimpleNamespace

import numpy as np

from edge_pose.errors import EdgePoseError
from edge_pose.serve.config_schema import ServeConfig
from edge_pose.serve.events import Hub
from edge_pose.serve.http_request import HttpError
from edge_pose.serve.http_server import make_server, serve_in_thread
from edge_pose.serve.metrics import Registry
from edge_pose.serve.pipeline import DetectorBoxes, FrameLoop, LockedEstimator, box_finder, person_json, timings_ms
from edge_pose.serve.sources import Capture

log = logging.getLogger("edge_pose.serve")

STOP_DEADLINE_S = 10.0
READY_MAX_AGE_S = 5.0  # or three frame times, when frames are slower than that
RECENT_S = 60.0  # drops and errors older than this no longer make /healthz "degraded" (they stay counted)
INFO_KEYS = ("chosen", "backend", "runtime", "accelerator", "device", "delegate", "execution_precision", "threads")


def build_metrics(registry: Registry) -> SimpleNamespace:
    r = registry
    return SimpleNamespace(
        frames_read=r.counter("edge_pose_frames_read_total", "Frames read from the source."),
        frames_processed=r.counter("edge_pose_frames_processed_total", "Frames that went through the pose pipeline."),
        frames_dropped=r.counter("edge_pose_frames_dropped_total",
                                 "Frames overwritten by a newer one before the pipeline took them."),
        pipeline_errors=r.counter("edge_pose_pipeline_errors_total", "Frames that failed in the pipeline."),
        people=r.counter("edge_pose_people_total", "People found, summed over processed frames."),
        stage_seconds=r.histogram("edge_pose_stage_seconds", "Per-stage latency of the pose pipeline.", ("stage",)),
        backend=r.info("edge_pose_backend", "The model and the backend that runs it."),
        http_requests=r.counter("edge_pose_http_requests_total", "HTTP responses by route and status.",
                                ("route", "code")),
        infer_requests=r.counter("edge_pose_infer_requests_total", "POST /v1/infer requests by outcome.", ("result",)),
        sse_dropped=r.counter("edge_pose_sse_dropped_total",
                              "Events dropped for stream clients too slow to take them."),
        http_limited=r.counter("edge_pose_http_limited_total",
                               "HTTP connections cut or refused by a limit (timeout, headers, connections).",
                               ("reason",)),
        reloads=r.counter("edge_pose_config_reloads_total", "SIGHUP config reloads by outcome.", ("result",)),
    )


class Daemon:
    def __init__(self, cfg: ServeConfig, estimator_factory=None, reload_config=None):
        self.cfg = cfg
        self._reload_config = reload_config  # () -> a new validated ServeConfig (ConfigError if bad), or None
        self._reload_wanted = threading.Event()
        self.reload_status = {"reloads": 0, "last_error": "", "needs_restart": []}
        self.registry = Registry()
        self.m = build_metrics(self.registry)
        self.hub = Hub(sse_queue=cfg.http.sse_queue, on_sse_drop=self.m.sse_dropped.inc)
        self.state = "starting"  # starting | loading | running | stopping | stopped
        self.started = time.time()
        self.estimator: LockedEstimator | None = None
        self.backend: dict = {}
        self.model_info: dict = {}
        self.capture: Capture | None = None
        self.pipeline: FrameLoop | None = None
        self.sinks: list = []
        self.find_boxes = box_finder(cfg.persons.boxes, cfg.persons.max_people) \
            if cfg.persons.boxes not in ("auto", "detector") else box_finder("whole", cfg.persons.max_people)
        self._estimator_factory = estimator_factory or open_estimator
        self._stop = threading.Event()
        self._server = None
        self._signals = 0
        r = self.registry
        r.gauge("edge_pose_source_up", "1 while the source delivers frames.",
                read=lambda: float(bool(self.capture and self.capture.state == "streaming")))
        r.counter_func("edge_pose_source_reconnects_total", "Times the source was reopened after a failure.",
                       read=lambda: self.capture.reconnects if self.capture else 0)
        r.gauge("edge_pose_sse_clients", "Connected event-stream clients.", read=self.hub.subscribers)
        r.gauge("edge_pose_ready", "1 when the daemon is ready (model loaded, results fresh).",
                read=lambda: float(self.ready()[0]))

    # state for HTTP ----------------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What is wrong now (or dropped/failed within RECENT_S), one short line each."""
        out = []
        recent = time.time() - RECENT_S
        if self.capture is not None and self.capture.state != "streaming":
            out.append(f"source {self.capture.state}: {self.capture.last_error or self.capture.uri}")
        if self.pipeline is not None and self.pipeline.last_error_time > recent:
            out.append(f"pipeline errors: {self.pipeline.errors} (last: {self.pipeline.last_error})")
        for sink in self.sinks:
            st = sink.status()
            if st.get("connected") is False:
                out.append(f"{sink.name}: not connected ({st.get('last_error') or 'connecting'})")
            if st.get("writing") is False:
                out.append(f"{sink.name}: not writing ({st.get('last_error')})")
            if st.get("last_drop_time", 0) > recent:
                out.append(f"{sink.name}: {st['dropped']} messages dropped")
        if self.reload_status["last_error"]:
            out.append(f"config reload failed (old config kept): {self.reload_status['last_error']}")
        return out

    def health(self) -> tuple[bool, dict]:
        """Alive = our own threads run; source and sink trouble is reported (degraded), not fatal."""
        dead = self.state == "running" and self.pipeline is not None and not self.pipeline.is_alive()
        problems = self.problems() + (["pipeline thread died"] if dead else [])
        body = {"status": "failing" if dead else ("degraded" if problems else "ok"), "state": self.state,
                "uptime_s": round(time.time() - self.started, 1), "problems": problems,
                "source": self.capture.status() if self.capture else None,
                "pipeline": self.pipeline.status() if self.pipeline else None,
                "sinks": {s.name: s.status() for s in self.sinks}, "backend": self.backend,
                "config": dict(self.reload_status)}
        return not dead, body

    def ready(self) -> tuple[bool, dict]:
        if self.state != "running":
            return False, {"ready": False, "reason": f"daemon {self.state}"}
        if self.capture is None or self.capture.state != "streaming":
            return False, {"ready": False, "reason": f"source {self.capture.state if self.capture else 'missing'}"}
        age = time.time() - self.pipeline.last_result_time if self.pipeline.last_result_time else None
        limit = max(READY_MAX_AGE_S, 3.0 / self.pipeline.fps) if self.pipeline.fps > 0 else READY_MAX_AGE_S
        if age is None or age > limit:
            return False, {"ready": False, "reason": "no recent result", "last_result_age_s": age}
        return True, {"ready": True, "last_result_age_s": round(age, 3)}

    def info(self) -> dict:
        return {"model": self.model_info, "backend": self.backend, "source": self.cfg.source.uri,
                "boxes": self.cfg.persons.boxes, "tracking": self.cfg.tracking.enabled, "state": self.state}

    def infer(self, data: bytes, boxes) -> dict:
        import cv2

        if self.estimator is None:
            raise HttpError(503, f"model not loaded yet (daemon {self.state})", {"Retry-After": "2"})
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise HttpError(400, "cannot decode the image (corrupt or truncated)")
        h, w = image.shape[:2]
        for x, y, bw, bh in (boxes or []):
            if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
                raise HttpError(400, f"boxes: {x:g},{y:g},{bw:g},{bh:g} lies outside the {h}x{w} image")
        if boxes is None and (self.cfg.persons.boxes in ("whole", "frame", "hog") or hasattr(self.find_boxes, "one")):
            # a fresh detection for an upload; a COCO file cannot name an uploaded image: whole frame then
            boxes = getattr(self.find_boxes, "one", self.find_boxes)(image, None)
        t0 = time.perf_counter()
        try:
            people, stage = self.estimator.predict(image, boxes)
        except EdgePoseError as exc:
            raise HttpError(400, str(exc)) from None
        stage["total"] = time.perf_counter() - t0
        return {"image": {"height": h, "width": w}, "people": [person_json(p) for p in people],
                "timings_ms": timings_ms(stage)}

    # lifecycle ---------------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            log.error("%s again: exiting now without a clean stop", name)
            os._exit(1)
        log.info("%s: stopping", name)
        self._stop.set()

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, lambda signum, frame: self._reload_wanted.set())

    def reload(self) -> None:
        """SIGHUP: read the config again; apply what can change live, name what needs a restart, keep the old
        config (and say so in /healthz) when the new one is bad. The JSON-lines file is reopened (logrotate)."""
        from edge_pose.serve.config_schema import ConfigError
        from edge_pose.serve.reload import apply_live

        try:
            new = self._reload_config() if self._reload_config else None
        except ConfigError as exc:
            self.reload_status["last_error"] = "; ".join(exc.problems)
            self.m.reloads.inc(result="rejected")
            for line in exc.problems:
                log.error("SIGHUP: config rejected, old config kept: %s", line)
            return
        if new is None:
            for sink in self.sinks:
                if hasattr(sink, "reopen"):
                    sink.reopen()
            log.info("SIGHUP: no config file; files reopened")
            return
        restart = apply_live(self, new)
        self.reload_status.update(reloads=self.reload_status["reloads"] + 1, last_error="", needs_restart=restart)
        self.m.reloads.inc(result="applied")
        log.info("SIGHUP: config reloaded from %s%s", new.origin,
                 f"; needs a restart to take effect: {', '.join(restart)}" if restart else "")

    def request_stop(self) -> None:
        self._stop.set()

    def _start_http(self) -> None:
        h = self.cfg.http
        if not h.enabled:
            return
        try:
            self._server = make_server(self, h.host, h.port)
        except OSError as exc:
            raise EdgePoseError(f"{self.cfg.origin}: [http] cannot listen on {h.host}:{h.port} "
                                f"({exc.strerror or exc})") from None
        host, port = self._server.server_address[:2]
        serve_in_thread(self._server)
        log.info("http: listening on http://%s:%d/ (token %s)", host, port, "required" if h.token else "off")

    def _load_model(self) -> None:
        self.state = "loading"
        raw = self._estimator_factory(self.cfg.model)
        self.estimator = LockedEstimator(raw)
        self.model_info, self.backend = describe_estimator(raw)
        self._load_detector()
        labels = {"model": self.model_info.get("name", "?"), "precision": self.model_info.get("precision", "?")}
        labels.update({k: v for k, v in self.backend.items() if k in INFO_KEYS})
        self.m.backend.set_info(**labels)
        log.info("model: %s on %s", self.model_info.get("name", "?"), self.backend or "?")

    def _load_detector(self) -> None:
        from edge_pose.serve.config_checks import detector_path

        p = self.cfg.persons
        path = detector_path(self.cfg)
        if path is None:
            if p.boxes == "auto":
                log.warning("persons: no detector bundle: each frame is one person box (several people in view get "
                            "one skeleton); convert one with `edge-pose convert ... --task detect`")
            return
        from edge_pose.detect.bundle import open_detector

        options = {"threads": self.cfg.model.threads} if self.cfg.model.threads else {}
        det = open_detector(path, device=self.cfg.model.device, **options)
        self.find_boxes = DetectorBoxes(det, p.detect_every, p.max_people)
        self.backend["detector"] = f"{det.bundle.path.name} ({det.loaded.chosen.label()})"
        log.info("persons: detector %s every %d frame(s)", det.bundle.path, p.detect_every)

    def _start_sinks(self) -> None:
        c = self.cfg
        if c.jsonl.path:
            from edge_pose.serve.jsonl_sink import JsonlSink

            self.sinks.append(JsonlSink(c.jsonl.path, c.jsonl.max_bytes, c.jsonl.backups, c.jsonl.flush_s))
        if c.mqtt.enabled:
            from edge_pose.serve.mqtt_sink import MqttSink

            self.sinks.append(MqttSink.from_config(c.mqtt).start())
        for sink in self.sinks:
            self.hub.add_sink(sink)
            st = sink.status()
            done = "written" if sink.name == "jsonl" else "delivered"
            self.registry.counter_func(f"edge_pose_{sink.name}_{done}_total", f"Results the {sink.name} sink {done}.",
                                       read=lambda s=sink, a=done: getattr(s, a))
            self.registry.counter_func(f"edge_pose_{sink.name}_dropped_total",
                                       f"Results the {sink.name} sink dropped (buffer bound or write error).",
                                       read=lambda s=sink: s.dropped)
            if "buffered" in st:
                self.registry.gauge(f"edge_pose_{sink.name}_buffered", "Messages waiting for the broker.",
                                    read=sink.buffered)
                self.registry.gauge(f"edge_pose_{sink.name}_connected", "1 while connected to the broker.",
                                    read=lambda s=sink: float(s.connected))
                self.registry.counter_func(f"edge_pose_{sink.name}_connect_failures_total",
                                           "Connection attempts the broker refused or that failed (TLS, auth).",
                                           read=lambda s=sink: s.connect_failures)
            if "writing" in st:
                self.registry.gauge(f"edge_pose_{sink.name}_writing", "1 while the last write succeeded.",
                                    read=lambda s=sink: float(s.writing))

    def run(self) -> int:
        c = self.cfg
        self._start_http()
        try:
            self._load_model()
            if self._stop.is_set():
                return self._shutdown()
            self._start_sinks()
            t = c.tracking
            tracker = None
            if t.enabled:
                from edge_pose.serve.tracking import Tracker

                tracker = Tracker(t.match, t.threshold, t.max_missed, t.smoothing, t.min_cutoff, t.beta,
                                  t.d_cutoff, sigmas=self.model_info.get("sigmas"))
            self.capture = Capture(c.source.uri, c.source.loop, c.source.fps,
                                   (c.source.reconnect_min_s, c.source.reconnect_max_s),
                                   on_read=self.m.frames_read.inc, on_drop=self.m.frames_dropped.inc)
            self.pipeline = FrameLoop(self.capture, self.estimator, self.hub, self.m, self.find_boxes, tracker,
                                     c.source.uri)
            self.capture.start()
            self.pipeline.start()
            self.state = "running"
            if not (self._server or self.sinks):
                log.warning("no output configured (http off, no mqtt, no jsonl): results go nowhere")
            log.info("serving: source %s, boxes %s, tracking %s, sinks: %s", c.source.uri, c.persons.boxes,
                     "on" if tracker else "off", ", ".join(s.name for s in self.sinks) or "none")
            while not self._stop.wait(0.5):
                if self._reload_wanted.is_set():
                    self._reload_wanted.clear()
                    try:
                        self.reload()
                    except Exception as exc:  # a reload must never take a running daemon down
                        self.reload_status["last_error"] = f"{type(exc).__name__}: {exc}"
                        log.exception("SIGHUP: reload failed; running on")
                for sink in self.sinks:
                    sink.maintain()
                if not self.pipeline.is_alive():
                    log.error("pipeline thread died; stopping with status 1 (for the service manager to restart)")
                    self._shutdown()
                    return 1
        except BaseException:
            self._shutdown()
            raise
        return self._shutdown()

    def _shutdown(self) -> int:
        if self.state == "stopped":
            return 0
        self.state = "stopping"
        watchdog = threading.Timer(STOP_DEADLINE_S, _stop_timeout)
        watchdog.daemon = True
        watchdog.start()
        t0 = time.monotonic()
        if self.capture is not None:
            self.capture.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
            self.pipeline.join(3.0)
        self.hub.close()
        for sink in self.sinks:
            try:
                sink.close(timeout=3.0)
            except Exception:
                log.exception("closing the %s sink failed", sink.name)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        watchdog.cancel()
        self.state = "stopped"
        read = self.capture.frames_read if self.capture else 0
        log.info("stopped in %.2f s: %d frames read, %d processed, %d dropped (newer frame arrived first)%s",
                 time.monotonic() - t0, read, self.pipeline.processed if self.pipeline else 0,
                 self.capture.frames_dropped if self.capture else 0,
                 "".join(f"; {s.name}: {s.dropped} dropped" for s in self.sinks))
        return 0


def _stop_timeout() -> None:
    log.error("stop took longer than %.0f s; exiting now", STOP_DEADLINE_S)
    os._exit(1)


def open_estimator(model_cfg):
    """The pose estimator with the configured device, backend and threads (the daemon owns the boxes)."""
    from edge_pose import PoseEstimator

    options = {}
    if model_cfg.backend:
        options["backend"] = model_cfg.backend
    if model_cfg.threads:
        options["threads"] = model_cfg.threads
    # detector=None: the daemon's [persons] section owns the boxes (detector every N frames, carried in between)
    return PoseEstimator(model_cfg.bundle, device=model_cfg.device, detector=None, **options)


def describe_estimator(estimator) -> tuple[dict, dict]:
    """(model facts for clients: name, keypoint names, skeleton, sigmas; what runs it: backend, device...)."""
    bundle = getattr(estimator, "bundle", None)
    manifest = getattr(bundle, "manifest", bundle)
    model: dict = {}
    if manifest is not None and hasattr(manifest, "keypoints"):
        kp = manifest.keypoints
        model = {"name": manifest.model.get("name", "?"), "family": manifest.model.get("family", "?"),
                 "precision": manifest.precision, "format": manifest.format,
                 "input_height": manifest.input.height, "input_width": manifest.input.width,
                 "keypoints": list(kp.names), "skeleton": [list(e) for e in kp.skeleton], "sigmas": list(kp.sigmas)}
    backend: dict = {}
    describe = getattr(estimator, "describe", None)
    if callable(describe):
        backend = {k: v for k, v in dict(describe()).items() if isinstance(v, (str, int, float, bool))}
    return model, backend

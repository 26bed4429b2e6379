"""HTTP API on the standard library's ThreadingHTTPServer (no web framework on the device).

Open without a token: GET / (the live page and its static files), /healthz, /readyz (probes must not need secrets).
Everything else needs `Authorization: Bearer TOKEN` when a token is configured (always when bound off loopback).
Bad input gets a 4xx with a one-line JSON error; an exception in a handler gets a 500 and never stops the server.
"""
from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from edge_pose.serve.events import SSE_KEEPALIVE, sse_event
from edge_pose.serve.imagecheck import ImageHeaderError, image_size

log = logging.getLogger("edge_pose.serve.http")

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/webp", "application/octet-stream")
OPEN_PATHS = ("/", "/index.html", "/healthz", "/readyz")
ROUTE_LABELS = ("/", "/healthz", "/readyz", "/metrics", "/v1/info", "/v1/poses/latest", "/v1/poses/stream",
                "/v1/frame.jpg", "/v1/infer")
SSE_KEEPALIVE_S = 10.0


class HttpError(Exception):
    def __init__(self, code: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers or {}


def parse_boxes(text: str) -> list[list[float]]:
    """'x,y,w,h;x,y,w,h' -> boxes; HttpError 400 when malformed."""
    boxes = []
    for part in filter(None, text.split(";")):
        try:
            box = [float(v) for v in part.split(",")]
        except ValueError:
            raise HttpError(400, f"boxes: {part!r} is not x,y,w,h numbers") from None
        if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
            raise HttpError(400, f"boxes: {part!r} must be x,y,w,h with w, h > 0")
        boxes.append(box)
    if not boxes:
        raise HttpError(400, "boxes: empty")
    return boxes


class Handler(BaseHTTPRequestHandler):
    server_version = "edge-pose"
    app = None  # set by make_server (a Daemon)

    # plumbing ----------------------------------------------------------------------------------------------
    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def _route(self) -> str:
        path = urlsplit(self.path).path
        return path if path in ROUTE_LABELS else ("/static" if path.startswith("/static/") else "other")

    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.app.m.http_requests.inc(route=self._route(), code=str(code))

    def _json(self, code: int, obj, headers: dict | None = None) -> None:
        self._send(code, (json.dumps(obj, separators=(",", ":")) + "\n").encode(), "application/json", headers)

    def _json_line(self, code: int, line: str, headers: dict | None = None) -> None:
        self._send(code, (line + "\n").encode(), "application/json", headers)

    def _authorised(self) -> None:
        token = self.app.cfg.http.token
        if not token or urlsplit(self.path).path in OPEN_PATHS or self.path.startswith("/static/"):
            return
        got = self.headers.get("Authorization", "")
        if not (got.startswith("Bearer ") and hmac.compare_digest(got[7:].strip().encode(), token.encode())):
            raise HttpError(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="edge-pose"'})

    def _dispatch(self, routes: dict) -> None:
        try:
            self._authorised()
            path = urlsplit(self.path).path
            handler = routes.get(path)
            if handler is None and path.startswith("/static/") and self.command in ("GET", "HEAD"):
                handler = self._static
            if handler is None:
                known = set(ROUTE_LABELS) | {"/index.html"}
                raise HttpError(405 if path in known else 404,
                                f"{self.command} not allowed on {path}" if path in known else f"no such path {path}")
            handler()
        except HttpError as exc:
            self._json(exc.code, {"error": exc.message}, exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # never let one request take the server down
            log.exception("http: %s %s failed", self.command, self.path)
            try:
                self._json(500, {"error": f"internal error: {type(exc).__name__}"})
            except OSError:
                pass

    def do_GET(self):
        self._dispatch({"/": self._index, "/index.html": self._index,
                        "/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics,
                        "/v1/info": self._info, "/v1/poses/latest": self._latest, "/v1/poses/stream": self._stream,
                        "/v1/frame.jpg": self._frame})

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        self._dispatch({"/v1/infer": self._infer})

    def do_PUT(self):
        self._dispatch({})

    do_DELETE = do_PATCH = do_PUT

    # routes ------------------------------------------------------------------------------------------------
    def _index(self):
        self._static("/static/index.html")

    def _static(self, path: str | None = None):
        name = (path or urlsplit(self.path).path)[len("/static/"):]
        target = (STATIC / name).resolve()
        if STATIC not in target.parents or not target.is_file():
            raise HttpError(404, f"no such file {name}")
        self._send(200, target.read_bytes(), CONTENT_TYPES.get(target.suffix, "application/octet-stream"))

    def _healthz(self):
        ok, body = self.app.health()
        self._json(200 if ok else 503, body)

    def _readyz(self):
        ok, body = self.app.ready()
        self._json(200 if ok else 503, body)

    def _metrics(self):
        self._send(200, self.app.registry.render().encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _info(self):
        self._json(200, self.app.info())

    def _latest(self):
        seq, line, _ = self.app.hub.snapshot()
        if line is None:
            raise HttpError(503, "no result yet", {"Retry-After": "1"})
        self._json_line(200, line, {"X-Edge-Pose-Seq": str(seq)})

    def _frame(self):
        jpeg = self.app.hub.jpeg(self.app.cfg.http.jpeg_quality)
        if jpeg is None:
            raise HttpError(503, "no frame yet", {"Retry-After": "1"})
        seq, data = jpeg
        self._send(200, data, "image/jpeg", {"X-Edge-Pose-Seq": str(seq)})

    def _stream(self):
        hub = self.app.hub
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.app.m.http_requests.inc(route="/v1/poses/stream", code="200")
        with hub.subscribe() as sub:
            self.wfile.write(b"retry: 2000\n\n")
            seq, line, _ = hub.snapshot()
            if line is not None:
                self.wfile.write(sse_event(seq, line))
            self.wfile.flush()
            last = time.monotonic()
            while not sub.closed:
                event = sub.get(timeout=1.0)
                if event is not None:
                    self.wfile.write(sse_event(*event))
                    self.wfile.flush()
                    last = time.monotonic()
                elif time.monotonic() - last > SSE_KEEPALIVE_S:
                    self.wfile.write(SSE_KEEPALIVE)
                    self.wfile.flush()
                    last = time.monotonic()
        self.close_connection = True

    def _infer(self):
        limits = self.app.cfg.http
        self.close_connection = True  # never reuse a connection whose body we may not have read
        ctype = self.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip().lower()
        if ctype not in IMAGE_TYPES:
            self.app.m.infer_requests.inc(result="rejected")
            raise HttpError(415, f"Content-Type {ctype!r} not accepted; send image bytes ({', '.join(IMAGE_TYPES)})")
        length = self.headers.get("Content-Length")
        if length is None:
            self.app.m.infer_requests.inc(result="rejected")
            raise HttpError(411, "Content-Length required")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.app.m.infer_requests.inc(result="rejected")
            raise HttpError(400, f"bad Content-Length {length!r}") from None
        if n > limits.max_body_bytes:
            self.app.m.infer_requests.inc(result="rejected")
            raise HttpError(413, f"body of {n} bytes exceeds the {limits.max_body_bytes}-byte limit")
        data = self.rfile.read(n)
        if len(data) != n:
            self.app.m.infer_requests.inc(result="rejected")
            raise HttpError(400, f"body ended after {len(data)} of {n} bytes")
        boxes = None
        query = parse_qs(urlsplit(self.path).query)
        try:
            if "boxes" in query:
                boxes = parse_boxes(query["boxes"][0])
            try:
                fmt, h, w = image_size(data)
            except ImageHeaderError as exc:
                raise HttpError(415 if "not a JPEG" in str(exc) else 400, str(exc)) from None
            if h * w > limits.max_pixels:
                raise HttpError(413, f"{fmt} image of {h}x{w} pixels exceeds the {limits.max_pixels}-pixel limit")
            result = self.app.infer(data, boxes)
        except HttpError:
            self.app.m.infer_requests.inc(result="rejected")
            raise
        self.app.m.infer_requests.inc(result="ok")
        self._json(200, result)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request, client_address):
        log.debug("http: connection from %s ended with an error", client_address, exc_info=True)


def make_server(app, host: str, port: int) -> Server:
    """Bind now (so a port in use fails at start, with a clear error), serve later from a thread."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    cls = Server
    if ":" in host:
        cls = type("Server6", (Server,), {"address_family": socket.AF_INET6})
    return cls((host, port), handler)


def serve_in_thread(server: Server) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    t.start()
    return t

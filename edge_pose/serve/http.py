"""HTTP API on the standard library's ThreadingHTTPServer (no web framework on the device): the request handler and
its routes. The server loop is edge_pose.serve.http_server, bounded reading and the token check
edge_pose.serve.http_request.

With a token on loopback, the live page, its static files, /healthz and /readyz stay open (probes must not need
secrets); bound to any other address, only /healthz is open. Everything else needs `Authorization: Bearer TOKEN`
(or HTTP Basic with the token as password, so that a browser can open the page). Tokens are compared in constant
time.

Every connection is bounded: at most `max_connections` at once (more get 503 and are closed), the request line and
headers must arrive within `header_timeout_s` and `max_header_bytes`, a body within `body_timeout_s`, and a client
that stops reading a response is cut after `write_timeout_s`. A slow or stalled client so costs one thread for a
few seconds and never touches the pipeline. Bad input gets a 4xx with a one-line JSON error; an exception in a
handler gets a 500 and never stops the server. JSON out is strict (no NaN or Infinity).
"""
from __future__ import annotations

import io
import logging
import socket
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from edge_pose import jsonio
from edge_pose.serve.events import SSE_KEEPALIVE, sse_event
from edge_pose.serve.http_request import DeadlineReader, HeaderTooLarge, HttpError, parse_boxes, token_matches
from edge_pose.imagecheck import ImageHeaderError, image_size

log = logging.getLogger("edge_pose.serve.http")

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/webp", "application/octet-stream")
OPEN_PATHS = ("/", "/index.html", "/healthz", "/readyz")  # with a token, on loopback
OPEN_PATHS_EXPOSED = ("/healthz",)  # with a token, bound beyond loopback
ROUTE_LABELS = ("/", "/healthz", "/readyz", "/metrics", "/v1/info", "/v1/poses/latest", "/v1/poses/stream",
                "/v1/frame.jpg", "/v1/infer")
SSE_KEEPALIVE_S = 10.0
STREAM_SNDBUF = 16384
INFER_WAIT_S = 5.0  # how long a POST waits for the one inference before it is told to retry


class Busy(HttpError):
    """A POST /v1/infer refused for want of a slot (counted as busy, not rejected)."""


@contextmanager
def _holding(slot, acquired: bool, what: str):
    """Run the block holding `slot` (already acquired, or not: then 503 Busy), released after it."""
    if not acquired:
        raise Busy(503, f"busy with {what}; retry", {"Retry-After": "1"})
    try:
        yield
    finally:
        slot.release()


class Handler(BaseHTTPRequestHandler):
    server_version = "edge-pose"
    app = None  # set by make_server (a Daemon)

    # plumbing ----------------------------------------------------------------------------------------------
    def setup(self):
        super().setup()
        limits = self.app.cfg.http
        self._reader = DeadlineReader(self.connection, limits.write_timeout_s)
        self.rfile = io.BufferedReader(self._reader, 8192)

    def handle_one_request(self):
        limits = self.app.cfg.http
        self._reader.arm(limits.header_timeout_s, limits.max_header_bytes)
        try:
            super().handle_one_request()
        except HeaderTooLarge:
            self.close_connection = True
            self.app.m.http_limited.inc(reason="headers")
            body = jsonio.dumps({"error": f"request line and headers exceed {limits.max_header_bytes} bytes"})
            self._raw_reply(431, "Request Header Fields Too Large", body)
            self._drain()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drain(self, limit: int = 65536, seconds: float = 0.5) -> None:
        """Read (a little of) what the client is still sending, so that closing does not reset the connection
        before the client has read our error reply."""
        deadline = time.monotonic() + seconds
        try:
            while limit > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.connection.recv(min(limit, 16384))
                if not chunk:
                    break
                limit -= len(chunk)
        except OSError:
            pass

    def _raw_reply(self, code: int, reason: str, body: str) -> None:
        data = (body + "\n").encode()
        head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                f"Connection: close\r\n\r\n").encode()
        try:
            self.wfile.write(head + data)
        except OSError:
            pass

    def send_error(self, code, message=None, explain=None):
        """The standard library's own rejections (bad request line, too many headers, unknown method) as one-line
        JSON like every other error here, not its HTML page."""
        short = self.responses.get(code, ("error",))[0]
        body = (jsonio.dumps({"error": " ".join(str(message or short).split())[:200]}) + "\n").encode()
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":  # a garbled request line: still a status line
            self.request_version = "HTTP/1.0"
        self.send_response(code, short)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", "") != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)
        self.close_connection = True

    def log_error(self, fmt, *args):
        if fmt.startswith("Request timed out"):  # idle: nothing of a next request arrived (keep-alive end)
            self.app.m.http_limited.inc(reason="timeout" if self._reader.got else "idle")
        self.log_message(fmt, *args)

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
        try:
            text = jsonio.dumps(obj, separators=(",", ":"))
        except ValueError as exc:  # a NaN somewhere: a 500 in valid JSON, never invalid JSON
            log.error("http: %s %s: cannot encode the response: %s", self.command, self.path, exc)
            code, headers, text = 500, None, '{"error":"internal error: a non-finite number in the response"}'
        self._send(code, (text + "\n").encode(), "application/json", headers)

    def _json_line(self, code: int, line: str, headers: dict | None = None) -> None:
        self._send(code, (line + "\n").encode(), "application/json", headers)

    def _open_path(self, path: str) -> bool:
        if self.server.exposed:
            return path in OPEN_PATHS_EXPOSED
        return path in OPEN_PATHS or path.startswith("/static/")

    def _authorised(self) -> None:
        token = self.app.cfg.http.token
        if not token or self._open_path(urlsplit(self.path).path):
            return
        if not token_matches(self.headers.get("Authorization", ""), token):
            raise HttpError(401, "missing or wrong bearer token",
                            {"WWW-Authenticate": 'Bearer realm="edge-pose", Basic realm="edge-pose"'})

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
            if getattr(self, "_unread_body", False):
                self._drain(limit=1 << 20, seconds=1.0)
        except TimeoutError:  # the client stopped reading (or sending): cut, counted
            self.app.m.http_limited.inc(reason="timeout")
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            self.close_connection = True
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
        # a small kernel send buffer bounds what a stalled client pins and lets write_timeout notice it soon
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
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
        self._unread_body = True  # an early error reply drains a little of the body (see _dispatch)
        try:
            n = self._infer_length(limits)
            boxes = None
            query = parse_qs(urlsplit(self.path).query)
            if "boxes" in query:  # checked (and capped) before the body is even read
                boxes = parse_boxes(query["boxes"][0], self.app.cfg.persons.max_people)
            # at most http_server.UPLOAD_SLOTS bodies in memory at once, whatever max_connections is
            with _holding(self.server.upload_slots, self.server.upload_slots.acquire(blocking=False),
                          "other uploads"):
                result = self._infer_body(limits, n, boxes)
        except HttpError as exc:
            self.app.m.infer_requests.inc(result="busy" if isinstance(exc, Busy) else "rejected")
            raise
        self.app.m.infer_requests.inc(result="ok")
        self._json(200, result)

    def _infer_length(self, limits) -> int:
        ctype = self.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip().lower()
        if ctype not in IMAGE_TYPES:
            raise HttpError(415, f"Content-Type {ctype!r} not accepted; send image bytes ({', '.join(IMAGE_TYPES)})")
        length = self.headers.get("Content-Length")
        if length is None:
            raise HttpError(411, "Content-Length required")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            raise HttpError(400, f"bad Content-Length {length[:40]!r}") from None
        if n > limits.max_body_bytes:
            raise HttpError(413, f"body of {n} bytes exceeds the {limits.max_body_bytes}-byte limit")
        return n

    def _infer_body(self, limits, n: int, boxes) -> dict:
        self._reader.arm(limits.body_timeout_s, None)
        try:
            data = self.rfile.read(n)
        except TimeoutError:
            self.app.m.http_limited.inc(reason="timeout")
            raise HttpError(408, f"body not received within {limits.body_timeout_s} s") from None
        self._unread_body = False
        if len(data) != n:
            raise HttpError(400, f"body ended after {len(data)} of {n} bytes")
        try:
            fmt, h, w = image_size(data)
        except ImageHeaderError as exc:
            raise HttpError(415 if "not a JPEG" in str(exc) else 400, str(exc)) from None
        if h * w > limits.max_pixels:
            raise HttpError(413, f"{fmt} image of {h}x{w} pixels exceeds the {limits.max_pixels}-pixel limit")
        # one inference at a time (the pipeline shares the model); wait a little for the one before
        with _holding(self.server.infer_slot, self.server.infer_slot.acquire(timeout=INFER_WAIT_S),
                      "another inference"):
            return self.app.infer(data, boxes)


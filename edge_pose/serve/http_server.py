"""The HTTP API's server loop: a thread per connection, at most `max_connections` at once (one more is answered 503
and closed at once), one inference and UPLOAD_SLOTS request bodies at a time whatever that number is.
"""
from __future__ import annotations

import logging
import socket
import threading
from http.server import ThreadingHTTPServer

from edge_pose.serve.addresses import is_loopback
from edge_pose.serve.http import Handler

log = logging.getLogger("edge_pose.serve.http")  # one logger for the whole HTTP API

UPLOAD_SLOTS = 2  # POST bodies held in memory at once

_BUSY_BODY = b'{"error":"too many connections; retry"}\n'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class Server(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them; one more is answered 503 and closed at once."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    exposed = False  # bound beyond loopback
    on_refused = staticmethod(lambda: None)

    def setup_limits(self, max_connections: int, exposed: bool, on_refused) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self.infer_slot = threading.Lock()
        self.upload_slots = threading.BoundedSemaphore(UPLOAD_SLOTS)
        self.exposed, self.on_refused = exposed, on_refused

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.on_refused()
            try:
                request.settimeout(0.5)
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: give the slot back
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        log.debug("http: connection from %s ended with an error", client_address, exc_info=True)


def make_server(app, host: str, port: int) -> Server:
    """Bind now (so a port in use fails at start, with a clear error), serve later from a thread."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    cls = Server
    if ":" in host:
        cls = type("Server6", (Server,), {"address_family": socket.AF_INET6})
    server = cls((host, port), handler)
    server.setup_limits(app.cfg.http.max_connections, not is_loopback(host),
                        lambda: app.m.http_limited.inc(reason="connections"))
    return server


def serve_in_thread(server: Server) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    t.start()
    return t

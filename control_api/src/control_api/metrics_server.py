"""Prometheus `/metrics` on METRICS_PORT, from a thread, bounded (issue #16).

prometheus_client's `start_http_server` starts a thread per connection and never times a read
out: every connection that sends nothing holds a thread and a descriptor for good, and a few
hundred of them used the descriptors the registry-auth listener needs to accept pulls in the
same process. Here each read and write on a connection times out after `timeout_s`, at most
`max_connections` are served at once (the others are closed as soon as they are accepted), and
each connection answers one request (HTTP/1.0). Any GET path answers the metrics, as
`start_http_server` does.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


class _Handler(BaseHTTPRequestHandler):
    timeout = 10.0  # every read and write on the connection (the factory sets its own)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server looks up
        body = generate_latest(REGISTRY)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """No access log."""


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, timeout_s: float, max_connections: int) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(max_connections)
        handler = type("MetricsHandler", (_Handler,), {"timeout": timeout_s})
        super().__init__((host, port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: this connection is closed at once
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def start(host: str, port: int, timeout_s: float, max_connections: int = 16) -> MetricsServer:
    """Serve the metrics on `host:port` from a daemon thread; return the server."""
    server = MetricsServer(host, port, timeout_s, max_connections)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server

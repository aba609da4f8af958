"""``/healthz`` and ``/metrics`` of ``conn serve`` (stdlib HTTP server, own thread).

``GET /healthz``: 200 with JSON ``{"status": "ok", "pid", "syncs": {name: {status,
schedule, next_run, runs, skipped, last_run, last_success}}}`` while the scheduler runs;
503 with the same body and ``"status": "scheduler_dead"`` once its thread has died (a
bug: restart the process), or ``"draining"`` after SIGTERM/SIGINT.
``GET /metrics``: the Prometheus text format. Anything else: 404, or, with a ``mount``
(``conn serve`` mounts the web UI, :mod:`conn.ui`), whatever the mounted handler answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from conn.http_server import ThreadedServer
from conn.secrets import redact, redact_obj
from conn.serve.metrics import CONTENT_TYPE, Metrics

#: What answers the paths that are not /healthz or /metrics: (request handler, method).
Fallback = Callable[[BaseHTTPRequestHandler, str], None]

#: Where ``conn serve`` listens unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8710


class StatusServer(ThreadedServer):
    """Serves the endpoints until :meth:`close`. ``health()``: (healthy, status word,
    per-sync states)."""

    def __init__(self, host: str, port: int, metrics: Metrics,
                 health: Callable[[], tuple[bool, str, dict[str, Any]]],
                 mount: Callable[[int], Fallback] | None = None) -> None:
        me = self
        self.metrics, self.health = metrics, health
        self.fallback: Fallback | None = None

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if me.fallback is not None and path not in ("/healthz", "/metrics"):
                    me.fallback(self, "GET")
                    return
                if path == "/healthz":
                    code, ctype, body = me._healthz()
                elif path == "/metrics":
                    # Label values are sync names and consent reasons; redacted all the same.
                    body = redact(me.metrics.exposition().decode()).encode()
                    code, ctype = 200, CONTENT_TYPE
                else:
                    code, ctype, body = 404, "text/plain", b"not found: try /healthz or " \
                                                           b"/metrics\n"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._other("HEAD")

            def do_POST(self) -> None:
                self._other("POST")

            def _other(self, method: str) -> None:
                if me.fallback is not None:
                    me.fallback(self, method)
                    return
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the run events

        super().__init__(host, port, Handler, "conn-serve-http")
        if mount is not None:
            self.fallback = mount(self.address[1])

    def _healthz(self) -> tuple[int, str, bytes]:
        healthy, status, syncs = self.health()
        body = {"status": status, "pid": os.getpid(), "syncs": syncs}
        data = json.dumps(redact_obj(body), default=str).encode() + b"\n"
        return (200 if healthy else 503), "application/json", data

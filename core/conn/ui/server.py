"""``conn ui``'s HTTP server (the standard library's, as ``conn serve`` uses): each
request on its own thread, handed to :class:`conn.ui.app.UiApp`."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any

from conn.http_server import ThreadedServer
from conn.ui.app import MAX_BODY, Response, UiApp


def answer(handler: BaseHTTPRequestHandler, app: UiApp, method: str) -> None:
    """Read one request from ``handler``, let ``app`` answer it, write the answer (also
    what ``conn serve`` calls for every path that is not its own)."""
    length = int(handler.headers.get("Content-Length") or 0)
    if length > MAX_BODY:
        resp = Response(413, b'{"ok": false, "error": {"type": "TooLarge", "message": '
                             b'"request body too large"}}\n')
        handler.close_connection = True
    else:
        body = handler.rfile.read(length) if length else b""
        resp = app.handle(method, handler.path, dict(handler.headers.items()), body)
    handler.send_response(resp.status)
    handler.send_header("Content-Type", resp.content_type)
    handler.send_header("Content-Length", str(len(resp.body)))
    for k, v in resp.headers.items():
        handler.send_header(k, v)
    handler.end_headers()
    if method != "HEAD":
        handler.wfile.write(resp.body)


class UiServer(ThreadedServer):
    """Serves ``app`` on ``host:port`` (0: a free port) until :meth:`close`."""

    def __init__(self, host: str, port: int, make_app: Any) -> None:
        holder: dict[str, UiApp] = {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                answer(self, holder["app"], "GET")

            def do_HEAD(self) -> None:
                answer(self, holder["app"], "HEAD")

            def do_POST(self) -> None:
                answer(self, holder["app"], "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # request lines could carry a person's key in a URL: not logged

        super().__init__(host, port, Handler, "conn-ui-http")
        #: The app, made once the port is known (its guard checks the Host header).
        self.app: UiApp = make_app(self.address[1])
        holder["app"] = self.app

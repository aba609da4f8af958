"""A threaded HTTP server of the standard library's, served from a thread of its own:
what ``conn serve`` (:mod:`conn.serve.http`) and ``conn ui`` (:mod:`conn.ui.server`)
listen with."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class ThreadedServer:
    """Listens on ``host:port`` (port 0: a free one, see :attr:`address`) as soon as it
    is made; answers requests with ``handler``, each on its own daemon thread, from
    :meth:`start` until :meth:`close`. Subclasses build the handler."""

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler],
                 thread_name: str) -> None:
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True,
                                        name=thread_name)

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on (the port chosen when 0 was asked)."""
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``http://host:port`` (an IPv6 host in brackets)."""
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> Self:
        """Serve from now on (in the background); returns the server."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()

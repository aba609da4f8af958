"""An httpx transport over the standard library's ``http.client``, for destinations that
send many small requests to one origin (the webhook).

httpx's default transport (httpcore over h11) costs about three times the CPU of
``http.client`` for a 100-record POST on loopback, and its writers released the GIL
more often per request (docs/performance.md, ``pg_stream``). This transport keeps one
keep-alive :class:`http.client.HTTPConnection` per thread and origin; everything above
it (the request and response models, auth, redirects, cookies, proxies from the
environment, which httpx mounts as transports of their own) stays httpx's.

What it does the way httpcore does:

- HTTPS with the TLS context httpx makes (:func:`httpx.create_ssl_context`: certifi's
  bundle, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``) unless given one;
- a kept connection that the server closed meanwhile (readable while idle: an EOF) is
  dropped before it is used, not sent on;
- the request's timeouts (connect; read and write as the socket's timeout);
- failures raised as httpx's transport errors (:class:`httpx.ConnectError`,
  :class:`httpx.ReadTimeout`, :class:`httpx.RemoteProtocolError`...), which
  :class:`~conn.http.client.HttpClient` retries; the connection is dropped;
- the body read whole and handed to httpx, which decodes ``Content-Encoding``.

Only HTTP/1.1; a response is read whole before the call returns (conn's clients never
stream one). httpx mounts no proxies from the environment for a client given its own
transport: :func:`direct_transport` gives none where one of them applies, so httpx's own
transport sends through it as before.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx

#: (scheme, host, port) of an origin.
Origin = tuple[str, str, int]


class KeepAliveTransport(httpx.BaseTransport):
    """One keep-alive ``http.client`` connection per thread and origin (see the module
    docstring). Thread-safe: each thread uses its own connections; :meth:`close`
    closes them all."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        #: The kept connections, by thread and origin. A thread that ended leaves its
        #: connections here until the next connection is made (then they are closed):
        #: a long-running ``conn serve`` starts new writer threads for every run.
        self._kept: dict[tuple[threading.Thread, Origin], http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    # -- connections --

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _connection(self, key: tuple[threading.Thread, Origin],
                    timeout: float | None) -> http.client.HTTPConnection:
        conn = self._kept.get(key)  # only this thread adds or drops its own keys
        if conn is not None and conn.sock is not None and _closed_by_peer(conn.sock):
            self._drop(key)
            conn = None
        if conn is None:
            scheme, host, port = key[1]
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                                   context=self._context())
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            with self._lock:
                gone = [k for k in self._kept if not k[0].is_alive()]
                for k in gone:
                    self._kept.pop(k).close()
                self._kept[key] = conn
        return conn

    def _drop(self, key: tuple[threading.Thread, Origin]) -> None:
        with self._lock:
            conn = self._kept.pop(key, None)
        if conn is not None:
            conn.close()

    # -- the transport --

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on this thread's connection to its origin; the whole answer."""
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"no transport for {url.scheme!r} URLs",
                                            request=request)
        port = url.port or (443 if url.scheme == "https" else 80)
        # The host as sent in Host: punycode for a non-ASCII name (httpx's IDNA 2008).
        host = url.raw_host.decode("ascii")
        key = (threading.current_thread(), (url.scheme, host, port))
        timeouts = request.extensions.get("timeout", {})
        io_timeout = _longest(timeouts.get("read"), timeouts.get("write"))
        conn = self._connection(key, timeouts.get("connect"))
        body = request.read()
        stage = "connect" if conn.sock is None else "write"
        try:
            if conn.sock is None:
                conn.connect()
                stage = "write"
            conn.sock.settimeout(io_timeout)
            conn.putrequest(request.method, url.raw_path.decode("ascii"), skip_host=True,
                            skip_accept_encoding=True)
            for name, value in request.headers.raw:
                conn.putheader(name, value)
            conn.endheaders(body or None)
            stage = "read"
            response = conn.getresponse()
            content = response.read()
        except BaseException as exc:
            self._drop(key)
            error = _transport_error(exc, stage)
            if error is None:
                raise
            raise error(f"{type(exc).__name__}: {exc}", request=request) from exc
        if response.will_close:
            self._drop(key)
        return httpx.Response(
            response.status, headers=response.getheaders(), stream=httpx.ByteStream(content),
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": response.reason.encode("ascii", "replace")})

    def close(self) -> None:
        """Close every connection of every thread."""
        with self._lock:
            kept, self._kept = self._kept, {}
        for conn in kept.values():
            conn.close()


def direct_transport(url: str) -> KeepAliveTransport | None:
    """A :class:`KeepAliveTransport` for requests to ``url``; None when a proxy from the
    environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, less ``NO_PROXY``)
    applies to it (then leave httpx its own transport, which honours the proxy)."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies()
    if (parsed.scheme in proxies or "all" in proxies) and \
            not urllib.request.proxy_bypass(parsed.host):
        return None
    return KeepAliveTransport()


def _longest(*timeouts: float | None) -> float | None:
    values = [t for t in timeouts if t is not None]
    return max(values) if len(values) == len(timeouts) else None


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether an idle kept connection can be read from: the server closed it (or sent
    what no request asked for); either way it must not carry the next request."""
    try:
        if hasattr(select, "poll"):  # select.select refuses descriptors past 1023
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _transport_error(exc: BaseException, stage: str
                     ) -> Callable[..., httpx.TransportError] | None:
    """httpx's error for a failure at ``stage`` (``connect``, ``write``, ``read``);
    None for what is not a transport failure (raised as it is)."""
    errors: dict[str, tuple[Any, Any]] = {
        "connect": (httpx.ConnectTimeout, httpx.ConnectError),
        "write": (httpx.WriteTimeout, httpx.WriteError),
        "read": (httpx.ReadTimeout, httpx.ReadError),
    }
    timeout, failure = errors[stage]
    if isinstance(exc, TimeoutError):
        return timeout
    if isinstance(exc, http.client.HTTPException):  # a bad status line, a cut-off body
        return httpx.RemoteProtocolError
    if isinstance(exc, ssl.SSLError | OSError):
        return failure
    return None

"""``conn.http.transport.KeepAliveTransport`` against real sockets on 127.0.0.1: what its
docstring promises (one kept connection per thread and origin, a connection the server
closed is not sent on, timeouts and failures as httpx's errors, HTTPS with the given TLS
context, encoded bodies decoded), through ``httpx.Client`` and conn's ``HttpClient``."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conn.http import HttpClient, RetryPolicy
from conn.http.transport import KeepAliveTransport, direct_transport

Answer = Callable[[bytes], bytes | None]  # the request's bytes -> the reply (None: close)


def _reply(status: int = 200, body: bytes = b'{"ok":true}', *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RawServer:
    """Answers each request on a connection with ``answer(request bytes)``; counts the
    connections it accepted and the requests it read."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer, self.tls = answer, tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.open.append(conn)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.requests.append(head + b"\r\n\r\n" + body)
                out = self.answer(head + b"\r\n\r\n" + body)
                if out is None:
                    conn.close()
                    return
                conn.sendall(out)
        except OSError:
            return

    def close_idle(self) -> None:
        """Close every connection from the server's side (as an idle timeout does)."""
        for conn in self.open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        self.sock.close()
        self.close_idle()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(answer: Answer = lambda _: _reply(), tls: ssl.SSLContext | None = None
             ) -> RawServer:
        servers.append(RawServer(answer, tls))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


def _client(**kwargs: object) -> httpx.Client:
    return httpx.Client(transport=KeepAliveTransport(**kwargs), timeout=5)  # type: ignore[arg-type]


def test_one_connection_per_thread_carries_every_request(serve) -> None:
    srv = serve()
    with _client() as client:
        for i in range(20):
            resp = client.post(srv.url(), content=f'{{"n":{i}}}'.encode())
            assert resp.status_code == 200 and resp.json() == {"ok": True}
        assert srv.connections == 1

        def ten() -> None:
            for _ in range(10):
                client.post(srv.url(), content=b"{}").raise_for_status()

        threads = [threading.Thread(target=ten) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert srv.connections == 4 and len(srv.requests) == 50
    first = srv.requests[0].decode()
    assert first.startswith("POST /hook HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{srv.port}" in first.lower() and first.endswith('{"n":0}')


def test_the_query_and_headers_are_sent_as_given(serve) -> None:
    srv = serve()
    with _client() as client:
        client.post(srv.url() + "?a=1&b=%20x", content=b"x", headers={"webhook-id": "msg_1"})
    sent = srv.requests[0].decode()
    assert sent.startswith("POST /hook?a=1&b=%20x HTTP/1.1")
    assert "webhook-id: msg_1" in sent.lower() and "content-length: 1" in sent.lower()


def test_a_connection_the_server_closed_is_not_sent_on(serve) -> None:
    srv = serve()
    with _client() as client:
        client.post(srv.url(), content=b"{}").raise_for_status()
        srv.close_idle()
        time.sleep(0.05)
        client.post(srv.url(), content=b"{}").raise_for_status()  # no error: a new one
    assert srv.connections == 2 and len(srv.requests) == 2


def test_connection_close_is_honoured(serve) -> None:
    srv = serve(lambda _: _reply(200, b"{}", "Connection: close"))
    with _client() as client:
        for _ in range(3):
            client.post(srv.url(), content=b"{}").raise_for_status()
    assert srv.connections == 3


def test_failures_are_httpx_transport_errors(serve) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with _client() as client:
        with pytest.raises(httpx.ConnectError):
            client.post(f"http://127.0.0.1:{port}/", content=b"{}")
        hangs = serve(lambda _: (time.sleep(1.0), _reply())[1])
        with pytest.raises(httpx.ReadTimeout):
            client.post(hangs.url(), content=b"{}", timeout=0.2)
        drops = serve(lambda _: None)
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(drops.url(), content=b"{}")
        garbage = serve(lambda _: b"NOT HTTP\r\n\r\n")
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(garbage.url(), content=b"{}")
        with pytest.raises(httpx.UnsupportedProtocol):
            client.get("ftp://127.0.0.1/")


def test_http_client_retries_what_the_transport_raises(serve) -> None:
    calls = {"n": 0}

    def flaky(_: bytes) -> bytes | None:
        calls["n"] += 1
        return None if calls["n"] <= 2 else _reply()

    srv = serve(flaky)
    client = HttpClient(transport=KeepAliveTransport(), sleep=lambda s: None, seed=1,
                        retry=RetryPolicy(max_attempts=4))
    resp = client.post(srv.url(), content=b"{}")
    client.close()
    assert resp.status_code == 200 and calls["n"] == 3 and client.stats["retries"] == 2


def test_an_encoded_body_is_decoded(serve) -> None:
    body = gzip.compress(b'{"errors":[]}')
    srv = serve(lambda _: _reply(200, body, "Content-Encoding: gzip",
                                 "Content-Type: application/json"))
    with _client() as client:
        resp = client.post(srv.url(), content=b"{}")
    assert resp.json() == {"errors": []} and resp.headers["content-type"] == "application/json"


def test_chunked_replies_are_read_whole(serve) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n")
    srv = serve(lambda _: chunked)
    with _client() as client:
        assert client.post(srv.url(), content=b"{}").json() == {"a": 1}
        assert client.post(srv.url(), content=b"{}").json() == {"a": 1}
    assert srv.connections == 1


def test_connections_of_ended_threads_are_closed(serve) -> None:
    srv = serve()
    transport = KeepAliveTransport()
    client = httpx.Client(transport=transport, timeout=5)
    t = threading.Thread(target=lambda: client.post(srv.url(), content=b"{}"))
    t.start()
    t.join()
    assert len(transport._kept) == 1
    client.post(srv.url(), content=b"{}")  # a new connection sweeps the ended thread's
    assert [k[0] for k in transport._kept] == [threading.current_thread()]
    client.close()
    assert transport._kept == {}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_https_verifies_the_server(serve, certificate) -> None:
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    srv = serve(tls=tls)
    # httpx's default context: the self-signed certificate is refused.
    with _client() as client, pytest.raises(httpx.ConnectError,
                                            match="CERTIFICATE_VERIFY_FAILED"):
        client.post(srv.url("https"), content=b"{}")
    trusting = ssl.create_default_context(cafile=str(cert))
    with _client(ssl_context=trusting) as client:
        for _ in range(3):
            assert client.post(srv.url("https"), content=b"{}").json() == {"ok": True}
    assert srv.connections == 2  # the refused handshake, then one kept connection


def test_no_direct_transport_where_an_environment_proxy_applies(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(direct_transport("https://hooks.example.com/x"), KeepAliveTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example.com")
    assert direct_transport("https://hooks.example.com/x") is None
    assert isinstance(direct_transport("http://hooks.example.com/x"), KeepAliveTransport)
    assert isinstance(direct_transport("https://internal.example.com/x"), KeepAliveTransport)
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:3128")
    assert direct_transport("http://hooks.example.com/x") is None


def test_a_connection_past_descriptor_1023_is_kept(serve) -> None:
    # Why: select.select refuses descriptors past 1023, which dropped every such connection.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("cannot open 1,200 files here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    r, w = os.pipe()
    held = [os.dup(r) for _ in range(1030)]
    try:
        srv = serve()
        with _client() as client:
            for _ in range(5):
                client.post(srv.url(), content=b"{}").raise_for_status()
        assert srv.connections == 1
    finally:
        for fd in [*held, r, w]:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_ipv6_literal_and_a_host_name_reach_the_server() -> None:
    try:
        sock = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = sock.getsockname()[1]

    def answer() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(_reply())

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    with _client() as client:
        assert client.post(f"http://[::1]:{port}/hook", content=b"{}").json() == {"ok": True}
    t.join(5)
    sock.close()


def test_a_host_name_is_resolved(serve) -> None:
    srv = serve()
    with _client() as client:
        resp = client.post(f"http://localhost:{srv.port}/hook", content=b"{}")
    assert resp.json() == {"ok": True}
    assert f"host: localhost:{srv.port}" in srv.requests[0].decode().lower()

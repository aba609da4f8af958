"""Auth helpers: bearer, basic, OAuth refresh (expiry, 401 once, thread-safe)."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs

import pytest
from conn import secrets
from conn.errors import CheckFailed
from conn.http import (
    BasicAuth,
    BearerToken,
    HttpClient,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
    RetryPolicy,
)
from conn.testing.http import FaultServer, RecordedRequest, Reply


def test_bearer_and_basic(fault_server: FaultServer) -> None:
    HttpClient(fault_server.url, auth=BearerToken("tok-123456")).get("/a")
    HttpClient(fault_server.url, auth=BasicAuth("site", "key-abcdef")).get("/b")
    a, b = fault_server.requests
    assert a.header("authorization") == "Bearer tok-123456"
    assert b.header("authorization").startswith("Basic ")
    assert secrets.redact(b.header("authorization")) == "Basic ***"


class TokenServer:
    """Issues tokens ``access-1``, ``access-2``... and accepts only the latest one."""

    def __init__(self, srv: FaultServer, expires_in: int = 3600) -> None:
        self.issued = 0
        self.expires_in = expires_in
        self.lock = threading.Lock()
        srv.route("POST", "/oauth/token", self.token, faults=False)
        srv.route("GET", "/api", self.api)

    def token(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if form.get("refresh_token") != "refresh-secret" or form.get("client_secret") != \
                "client-secret":
            return Reply(400, json={"error": "invalid_grant",
                                    "error_description": "refresh token revoked"})
        with self.lock:
            self.issued += 1
            return Reply(200, json={"access_token": f"access-{self.issued}",
                                    "expires_in": self.expires_in, "token_type": "bearer"})

    def api(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("authorization") != f"Bearer access-{self.issued}":
            return Reply(401, json={"message": "Session expired or invalid"})
        return Reply(200, json={"ok": True})


def oauth(srv: FaultServer, **kw) -> OAuth2RefreshToken:
    return OAuth2RefreshToken(srv.url + "/oauth/token", "refresh-secret", "client-id",
                              "client-secret", **kw)


def test_oauth_fetches_then_refreshes_once_on_401(fault_server: FaultServer) -> None:
    ts = TokenServer(fault_server)
    auth = oauth(fault_server)
    c = HttpClient(fault_server.url, auth=auth)
    assert c.get("/api").status_code == 200 and auth.refreshes == 1
    ts.issued += 1  # the vendor invalidates the token (session expired)
    assert c.get("/api").status_code == 200 and auth.refreshes == 2
    assert secrets.redact("token access-3") == "token ***"
    statuses = [r.status for r in fault_server.requests if r.path == "/api"]
    assert statuses == [200, 401, 200]


def test_oauth_refreshes_before_expiry(fault_server: FaultServer, clock) -> None:
    TokenServer(fault_server, expires_in=120)
    auth = oauth(fault_server, clock=clock, margin=60)
    c = HttpClient(fault_server.url, auth=auth)
    c.get("/api")
    clock.now += 61  # within the margin before expiry
    c.get("/api")
    assert auth.refreshes == 2
    assert [r.status for r in fault_server.requests if r.path == "/api"] == [200, 200]


def test_oauth_thread_safe_single_refresh(fault_server: FaultServer) -> None:
    TokenServer(fault_server)
    auth = oauth(fault_server)
    c = HttpClient(fault_server.url, auth=auth)
    out = []
    threads = [threading.Thread(target=lambda: out.append(c.get("/api").status_code))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [200] * 8 and auth.refreshes == 1


def test_oauth_refused_is_check_failed_without_secrets(fault_server: FaultServer) -> None:
    TokenServer(fault_server)
    auth = OAuth2RefreshToken(fault_server.url + "/oauth/token", "wrong-refresh", "cid",
                              "client-secret")
    c = HttpClient(fault_server.url, auth=auth, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(CheckFailed, match="invalid_grant refresh token revoked") as ei:
        c.get("/api")
    assert "wrong-refresh" not in str(ei.value) and "client-secret" not in str(ei.value)


def test_oauth_rotated_refresh_token(fault_server: FaultServer) -> None:
    fault_server.route("POST", "/t", lambda r, s: Reply(200, json={
        "access_token": "acc-xyz1", "refresh_token": "rotated-refresh", "expires_in": 60}))
    auth = OAuth2RefreshToken(fault_server.url + "/t", "old-refresh", "cid",
                              client_auth="basic")
    assert auth.token() == "acc-xyz1" and auth.refresh_token == "rotated-refresh"
    assert secrets.redact("rotated-refresh acc-xyz1") == "*** ***"
    assert fault_server.requests[0].header("authorization").startswith("Basic ")


def test_oauth_client_credentials(fault_server: FaultServer) -> None:
    seen = []

    def token(req: RecordedRequest, srv: FaultServer) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        seen.append(form)
        return Reply(200, json={"access_token": "cc-access-1", "instance_url": "https://x"})

    fault_server.route("POST", "/cc", token, faults=False)
    extras = {}
    auth = OAuth2ClientCredentials(fault_server.url + "/cc", "cid", "cc-secret-1",
                                   on_token=extras.update)
    assert auth.token() == "cc-access-1" and extras["instance_url"] == "https://x"
    assert seen == [{"grant_type": "client_credentials", "client_id": "cid",
                     "client_secret": "cc-secret-1"}]
    assert secrets.redact("cc-secret-1") == "***"

"""Retries: Retry-After, backoff bounds, give-up rules, timeouts, connection errors."""

from __future__ import annotations

import email.utils
import random
import socket
import time

import httpx
import pytest
from conn.errors import RetryLater
from conn.http import (
    NO_RETRY,
    HttpClient,
    RateLimiter,
    RetryPolicy,
    StillFailing,
    parse_retry_after,
)
from conn.testing.http import FaultServer, Reply, Slow
from hypothesis import given
from hypothesis import strategies as st


def test_retry_after_seconds_is_honoured(clock) -> None:
    with FaultServer(schedule=[Reply(429, headers={"Retry-After": "7"}), 503]) as srv:
        c = HttpClient(srv.url, clock=clock, sleep=clock.sleep, seed=1,
                       retry=RetryPolicy(base_delay=0.01))
        assert c.post("/x", json={}).status_code == 200
    assert [r.status for r in srv.requests] == [429, 503, 200]
    assert 7.0 <= clock.sleeps[0] <= 7.0 + 0.01  # Retry-After, at most a tiny jitter
    assert clock.sleeps[1] <= 0.02  # plain backoff for the 503 (attempt 1: cap 2*base)
    assert c.stats["retries"] == 2 and c.stats["throttled"] == 1


def test_retry_after_http_date() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_retry_after_pauses_the_shared_limiter(clock) -> None:
    lim = RateLimiter(1000, clock=clock, sleep=clock.sleep)
    with FaultServer(schedule=[Reply(429, headers={"Retry-After": "3"})]) as srv:
        c = HttpClient(srv.url, limiter=lim, clock=clock, sleep=clock.sleep)
        c.get("/x")
    before = clock()
    # another worker asking for a slot now waits for nothing more: the pause is over
    # because the retrying worker slept through it; a fresh pause is visible to all:
    lim.pause(5)
    assert lim.acquire() == pytest.approx(5) and clock() - before == pytest.approx(5)


@given(st.integers(0, 30), st.floats(0.01, 5), st.floats(0.1, 60), st.integers(0, 2**32))
def test_backoff_bounds(attempt: int, base: float, cap: float, seed: int) -> None:
    p = RetryPolicy(base_delay=base, max_delay=cap)
    d = p.backoff(attempt, random.Random(seed))
    assert 0 <= d <= min(cap, base * 2 ** attempt)


def test_gives_up_after_max_attempts(clock) -> None:
    with FaultServer(error_rate=1.0) as srv:
        c = HttpClient(srv.url, clock=clock, sleep=clock.sleep,
                       retry=RetryPolicy(max_attempts=4, base_delay=1, max_delay=8))
        with pytest.raises(RetryLater, match=r"after 4 attempt\(s\).*HTTP 503"):
            c.post("/x", json={})
    assert len(srv.requests) == 4 and len(clock.sleeps) == 3
    assert all(s <= cap for s, cap in zip(clock.sleeps, [1, 2, 4], strict=True))


def test_gives_up_when_retry_after_exceeds_total_budget(clock) -> None:
    with FaultServer(schedule=[Reply(429, headers={"Retry-After": "3600"})]) as srv:
        c = HttpClient(srv.url, clock=clock, sleep=clock.sleep,
                       retry=RetryPolicy(max_total_wait=60))
        with pytest.raises(RetryLater, match="beyond the 60 s retry budget"):
            c.get("/x")
    assert clock.sleeps == [] and len(srv.requests) == 1


def test_client_errors_are_not_retried() -> None:
    with FaultServer(schedule=[Reply(404, json={"message": "no such list"})]) as srv:
        c = HttpClient(srv.url)
        r = c.get("/x")
        assert r.status_code == 404 and len(srv.requests) == 1
        with pytest.raises(Exception, match=r"HTTP 404: .*no such list"):
            c.raise_for_status(r)


def test_timeout_is_retried() -> None:
    with FaultServer(schedule=[Slow(0.5)]) as srv:
        c = HttpClient(srv.url, timeout=0.1, retry=RetryPolicy(base_delay=0.01))
        assert c.post("/x", json={"records": [{"id": 1}]}).status_code == 200
    assert len(srv.requests) == 2 and c.stats["retries"] == 1


def test_connection_error_is_retried_then_retry_later(clock) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = HttpClient(f"http://127.0.0.1:{port}", clock=clock, sleep=clock.sleep,
                   retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RetryLater, match="ConnectError"):
        c.get("/x")
    assert len(clock.sleeps) == 2


def test_custom_retry_predicate() -> None:
    with FaultServer(schedule=[Reply(403, json={"errorCode": "REQUEST_LIMIT_EXCEEDED"})]) as srv:
        c = HttpClient(srv.url, retry=RetryPolicy(base_delay=0.001))
        r = c.get("/x", retry_on=lambda resp: b"LIMIT_EXCEEDED" in resp.content)
        assert r.status_code == 200 and len(srv.requests) == 2


def test_transport_injection() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    c = HttpClient("https://api.example.com", transport=httpx.MockTransport(handler))
    assert c.get("/ping").json() == {"ok": True}


def test_no_retry_for_one_request_fails_at_once_with_its_reason() -> None:
    """A check wants one attempt: NO_RETRY for that request only (the client keeps its
    policy); the error says what failed without talking about rows."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    c = HttpClient(dead + "/v1", retry=RetryPolicy(max_attempts=6, base_delay=0.5))
    started = time.monotonic()
    with pytest.raises(StillFailing) as ei:
        c.get("/", retry=NO_RETRY)
    assert time.monotonic() - started < 1.0 and c.stats["requests"] == 1
    err = ei.value
    assert err.attempts == 1 and err.target == f"GET {dead}/v1/"
    assert "ConnectError" in err.reason and "rows" not in err.reason
    c.close()

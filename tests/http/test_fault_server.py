"""The fault-injecting server and the vcrpy helpers of conn.testing.http."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conn import secrets
from conn.http import HttpClient, RateLimiter, RetryPolicy
from conn.testing.http import (
    DOC_CASSETTE_MARKER,
    FaultServer,
    Reply,
    Slow,
    assert_documented_cassette,
    assert_no_secrets,
    is_documented_cassette,
    mark_documented_cassette,
)

_http = httpx.Client()


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    _http.close()


def post(srv: FaultServer, ids, **kw) -> httpx.Response:
    return _http.post(srv.url + "/batch", json={"records": [{"id": i} for i in ids]}, **kw)


def test_rate_limit_429_with_retry_after() -> None:
    with FaultServer(rate_limit=5, rate_burst=2) as srv:
        codes = [post(srv, [i]).status_code for i in range(4)]
        assert codes == [200, 200, 429, 429]
        r = post(srv, [9])
        assert r.headers["retry-after"] == "1"
        time.sleep(0.25)  # one token back (5 per second)
        assert post(srv, [10]).status_code == 200
    assert [r.fault for r in srv.requests].count("rate_limit") == 3


def _four_senders(limiter: RateLimiter | None) -> FaultServer:
    # The server's burst leaves room for scheduling jitter on a loaded machine (requests
    # the client spaced 20 ms apart can arrive together); 20 requests at once exceed it.
    with FaultServer(rate_limit=50, rate_burst=5) as srv:
        c = HttpClient(srv.url, limiter=limiter, retry=RetryPolicy(max_attempts=20))
        threads = [threading.Thread(target=lambda k=k: [c.post("/b", json={"records": [
            {"id": f"{k}-{i}"}]}) for i in range(5)]) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c.close()
    return srv


def test_client_limiter_matches_server_limit() -> None:
    srv = _four_senders(RateLimiter(50, burst=1))
    assert srv.statuses[429] == 0 and len(srv.store) == 20
    unlimited = _four_senders(None)
    assert unlimited.statuses[429] > 0 and len(unlimited.store) == 20


def test_random_faults_are_deterministic_with_a_seed() -> None:
    def run(seed: int) -> list[int]:
        with FaultServer(seed=seed, throttle_rate=0.2, error_rate=0.2, retry_after=0) as srv:
            return [post(srv, [i]).status_code for i in range(30)]

    a, b = run(7), run(7)
    assert a == b and {429, 503, 200} <= set(a)
    assert run(8) != a


def test_schedule_partial_failures_and_store() -> None:
    with FaultServer(schedule=[500, None, Reply(418)], reject={"2", "5"}) as srv:
        assert post(srv, [1]).status_code == 500
        r = post(srv, range(6))
        assert r.json() == {"errors": [{"index": 2, "message": "record 2 rejected: invalid value"},
                                       {"index": 5, "message": "record 5 rejected: invalid value"}]}
        assert post(srv, [1]).status_code == 418
        srv.assert_exactly_once(["0", "1", "3", "4"])
        post(srv, [1])
        with pytest.raises(AssertionError, match="duplicated=\\['1'\\]"):
            srv.assert_exactly_once(["0", "1", "3", "4"])
        httpx.post(srv.url + "/b", json={"operation": "delete", "records": [{"id": 0}]})
        assert "0" not in srv.store and srv.deleted["0"] == 1


def test_batch_reject_mode() -> None:
    with FaultServer(reject=lambda rec: "bad email" if rec["id"] == 3 else None,
                     reject_mode="batch") as srv:
        r = post(srv, range(5))
        assert r.status_code == 400 and "bad email" in r.json()["message"] and not srv.store


def test_slow_responses() -> None:
    with FaultServer(delay=0.2, delay_rate=1.0, schedule=[Slow(0.05)]) as srv:
        t0 = time.monotonic()
        post(srv, [1])
        post(srv, [2])
        assert time.monotonic() - t0 >= 0.25


def test_idempotency_key_and_lost_responses() -> None:
    with FaultServer(lost_response_rate=1.0, idempotency_header="idempotency-key") as srv:
        r = post(srv, [1], headers={"Idempotency-Key": "k1"})
        assert r.status_code == 503 and srv.store == {"1": {"id": 1}}  # stored, reply lost
        srv.configure(lost_response_rate=0.0)
        assert post(srv, [1], headers={"Idempotency-Key": "k1"}).status_code == 200
        assert srv.duplicates == 1 and srv.arrivals["1"] == 1


def test_pluggable_handler_and_routes() -> None:
    def vendor(req, srv):
        return Reply(207, json={"numErrors": 0, "path": req.path})

    with FaultServer(handler=vendor) as srv:
        srv.route("GET", "/health", lambda req, s: Reply(204), faults=False)
        srv.configure(error_rate=1.0)
        assert httpx.get(srv.url + "/health").status_code == 204
        srv.configure(error_rate=0.0)
        assert httpx.post(srv.url + "/v3/x", json={}).json()["path"] == "/v3/x"
        with pytest.raises(TypeError):
            srv.configure(nonsense=1)


def test_retrying_client_gets_everything_exactly_once(fault_server: FaultServer) -> None:
    fault_server.configure(seed=3, throttle_rate=0.1, error_rate=0.1, retry_after=0.001)
    c = HttpClient(fault_server.url, retry=RetryPolicy(max_attempts=10, base_delay=0.001))
    for i in range(0, 200, 10):
        c.post("/b", json={"records": [{"id": k} for k in range(i, i + 10)]})
    fault_server.assert_exactly_once(range(200))
    assert fault_server.statuses[429] > 0 and fault_server.statuses[503] > 0


# --- vcr helpers ------------------------------------------------------------------------------


def test_vcr_filters_secrets(vcr_for, tmp_path, fault_server: FaultServer) -> None:
    token, key = "tok-recorded-secret", "apikey-recorded-secret"
    secrets.register(token)
    fault_server.route("POST", "/oauth", lambda r, s: Reply(200, json={
        "access_token": "fresh-access-token", "note": f"hello {token}"}))
    v = vcr_for(tmp_path, record_mode="once")
    with v.use_cassette("vendor"):
        httpx.post(fault_server.url + f"/oauth?api_key={key}",
                   headers={"Authorization": f"Bearer {token}"},
                   json={"client_secret": "cs-recorded-secret", "x": 1})
    cassette = tmp_path / "vendor.yaml"
    assert_no_secrets(cassette, [token, key, "cs-recorded-secret", "fresh-access-token"])
    # replay: no request reaches the server
    n = len(fault_server.requests)
    with vcr_for(tmp_path).use_cassette("vendor"):
        r = httpx.post(fault_server.url + f"/oauth?api_key={key}", json={"x": 1})
    assert r.status_code == 200 and len(fault_server.requests) == n


def test_documented_cassette_marker(tmp_path, vcr_for) -> None:
    p = tmp_path / "doc.yaml"
    p.write_text("interactions: []\nversion: 1\n")
    assert not is_documented_cassette(p)
    with pytest.raises(AssertionError, match="built from vendor documentation"):
        assert_documented_cassette(p)
    mark_documented_cassette(p)
    mark_documented_cassette(p)
    assert p.read_text().count(DOC_CASSETTE_MARKER) == 1
    assert_documented_cassette(p)
    with vcr_for(tmp_path).use_cassette("doc") as cas:  # the marker is a YAML comment
        assert len(cas) == 0


def test_route_patterns_match_one_segment_each_exact_paths_first() -> None:
    with FaultServer() as srv:
        def one(req, s):
            return Reply(200, json={"id": req.params["id"], "route": "pattern"})

        def sub(req, s):
            return Reply(200, json={**req.params, "route": "nested"})

        srv.route("DELETE", "/persons/{id}", one)
        srv.route("GET", "/persons/{id}/notes/{note}", sub)
        srv.route("DELETE", "/persons/me", lambda r, s: Reply(403), faults=False)
        r = _http.delete(srv.url + "/persons/p%2042")
        assert r.json() == {"id": "p 42", "route": "pattern"}
        assert _http.get(srv.url + "/persons/7/notes/9").json() == {
            "id": "7", "note": "9", "route": "nested"}
        assert _http.delete(srv.url + "/persons/me").status_code == 403  # exact wins
        # one segment per placeholder; another method or a longer path falls through
        assert _http.delete(srv.url + "/persons/1/2").json() == {"ok": True}
        assert _http.post(srv.url + "/persons/1", json={}).json() == {"ok": True}
        assert srv.requests[0].params == {"id": "p 42"}


def test_fixed_port() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with FaultServer(port=port) as srv:
        assert srv.url == f"http://127.0.0.1:{port}"
        assert _http.get(srv.url + "/").status_code == 200

"""The excerpt of the vendor exchange kept with each rejected row (conn.http.exchange):
method, the URL's path only, status, that row's part of the request, the start of the
answer; every text cut to 2,048 characters; registered secrets masked; headers, host,
user information and query string never kept. Every destination writing through
``write_with_split`` or ``write_each`` gets it without code of its own."""

from __future__ import annotations

import json
import threading

import httpx
from conn import secrets
from conn.http import HttpClient, write_each, write_with_split
from conn.http.batching import BatchRejected
from conn.http.exchange import LIMIT, excerpt
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples

TOKEN = "tok-5c0ffee5c0ffee-secret"
KEY = "key-90a7be1f6e3d"


def vendor(bad: set[int], mode: str) -> httpx.MockTransport:
    """A batch API: refuses the whole batch with 400 (``mode="batch"``) or names the
    bad records in a 200 answer (``"records"``); its answers quote the API key."""
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if isinstance(body, dict):  # one record per request
            ok = body["id"] not in bad
            return httpx.Response(200 if ok else 422, json={
                "error": None if ok else f"id {body['id']} refused for key {KEY}"})
        wrong = [i for i, r in enumerate(body) if r["id"] in bad]
        if mode == "batch" and wrong:
            return httpx.Response(400, json={"message": f"batch refused (key {KEY})"})
        return httpx.Response(200, json={"errors": [
            {"index": i, "message": f"id {body[i]['id']} is invalid"} for i in wrong]})
    return httpx.MockTransport(handle)


def client(transport: httpx.MockTransport) -> HttpClient:
    secrets.register(TOKEN, KEY)
    return HttpClient(f"https://api:{TOKEN}@crm.example", transport=transport,
                      headers={"Authorization": f"Bearer {TOKEN}"}, seed=1)


def records(n: int) -> list[dict]:
    return [{"id": i, "email": f"u{i}@example.com", "note": f"uses {TOKEN}" if i % 3 else ""}
            for i in range(n)]


def send_batches(c: HttpClient, mode: str):
    def send(part):
        resp = c.post(f"/v3/contacts/batch?api_key={KEY}&x=1", json=list(part))
        if resp.status_code == 400:
            raise BatchRejected(resp.text, status=400)
        return {e["index"]: e["message"] for e in resp.json()["errors"]}
    return send


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.sets(st.integers(0, n - 1)), st.sampled_from(["batch", "records"]))))
def test_each_rejection_carries_its_own_exchange(case) -> None:
    n, bad, mode = case
    rows = records(n)
    with client(vendor(bad, mode)) as c:
        res = write_with_split(rows, send_batches(c, mode))
    assert sorted(r.index for r in res.rejected) == sorted(bad)
    for r in res.rejected:
        ex = r.excerpt
        assert ex is not None
        assert (ex["method"], ex["path"]) == ("POST", "/v3/contacts/batch")
        assert ex["status"] == (400 if mode == "batch" else 200)
        # That row's part of the request: its record, secrets masked.
        sent = json.loads(ex["request"])
        assert sent == json.loads(secrets.redact(json.dumps(rows[r.index],
                                                            separators=(",", ":"))))
        assert ("refused" if mode == "batch" else f"id {r.index} is invalid") in ex["response"]
        text = json.dumps(ex)
        assert TOKEN not in text and KEY not in text and "crm.example" not in text
        assert "api_key" not in text and "Bearer" not in text


def test_one_request_per_record_on_several_threads_keeps_each_rows_exchange() -> None:
    rows = records(30)
    bad = {2, 9, 17, 28}
    with client(vendor(bad, "records")) as c:
        def call(record):
            resp = c.put(f"/v3/members/{record['id']}", json=record)
            return resp.json()["error"] if resp.status_code >= 400 else None
        res = write_each(rows, call, workers=4)
    assert {r.index: r.excerpt["path"] for r in res.rejected} == {
        i: f"/v3/members/{i}" for i in sorted(bad)}
    for r in res.rejected:
        assert r.excerpt["status"] == 422 and json.loads(r.excerpt["request"])["id"] == r.index
        assert f"id {r.index} refused for key ***" in r.excerpt["response"]


def test_texts_are_cut_to_the_limit() -> None:
    big = {"id": 0, "note": "x" * 10_000}

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="y" * 10_000)

    with client(httpx.MockTransport(handle)) as c:
        def send(part):
            resp = c.post("/v1/things", json=list(part))
            raise BatchRejected(f"HTTP {resp.status_code}", status=resp.status_code)
        (r,) = write_with_split([big], send).rejected
    assert len(r.excerpt["request"]) == LIMIT + 1 and r.excerpt["request"].endswith("…")
    assert r.excerpt["response"] == "y" * LIMIT + "…"


def test_no_request_no_excerpt_and_a_thread_sees_only_its_own() -> None:
    # A plugin's own refusal before any request (a missing field) has no exchange.
    res = write_with_split([{"id": 1}], lambda part: ["email is missing"])
    assert res.rejected[0].reason == "email is missing" and res.rejected[0].excerpt is None
    with client(vendor(set(), "records")) as c:
        c.post("/v3/contacts/batch", json=[])
        assert excerpt({"id": 1})["path"] == "/v3/contacts/batch"
        seen: list[object] = []
        t = threading.Thread(target=lambda: seen.append(excerpt({"id": 1})))
        t.start()
        t.join()
        assert seen == [None]


def test_an_excerpt_a_plugin_built_is_masked_and_cut_before_it_is_stored() -> None:
    from conn.destination import Rejection, WriteResult
    from conn.runtime.delivery import rejections

    secrets.register(TOKEN)
    own = {"method": "POST", "path": f"/v1/{TOKEN}", "status": 400,
           "request": "r" * 5000, "response": f"token {TOKEN} refused"}
    pairs, excerpts = rejections(WriteResult([Rejection(3, "refused", excerpt=own),
                                              Rejection(5, "refused")]))
    assert pairs == [(3, "refused"), (5, "refused")] and set(excerpts) == {3}
    kept = json.loads(excerpts[3])
    assert kept["path"] == "/v1/***" and kept["response"] == "token *** refused"
    assert kept["request"] == "r" * LIMIT + "…" and kept["status"] == 400

"""conn's ``cassette`` fixture (pytest plugin): replay only, method, URL and parsed body
matched, each interaction at most once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from vcr.errors import CannotOverwriteExistingCassetteException

URL = "https://api.example.com/v1/contacts/batch"


def test_replays_when_the_body_matches_as_data(cassette: Callable[..., Any]) -> None:
    with cassette("echo") as cas:  # other key order and spacing: the same data
        resp = httpx.post(URL, content=b'{"operation":"upsert","records":[{"name":"Ana",'
                                       b'"id":1}]}', headers={"Content-Type": "application/json"})
    assert resp.json() == {"ok": True} and cas.all_played


def test_another_body_does_not_replay(cassette: Callable[..., Any]) -> None:
    with cassette("echo") as cas, pytest.raises(CannotOverwriteExistingCassetteException):
        httpx.post(URL, json={"operation": "upsert", "records": [{"id": 2, "name": "Bo"}]})
    assert not cas.all_played


def test_each_interaction_plays_once(cassette: Callable[..., Any]) -> None:
    body = {"records": [{"id": 1, "name": "Ana"}], "operation": "upsert"}
    with cassette("echo"), pytest.raises(CannotOverwriteExistingCassetteException):
        httpx.post(URL, json=body)
        httpx.post(URL, json=body)


def test_options_reach_the_vcr(cassette: Callable[..., Any]) -> None:
    seen: list[str] = []

    def same_path(r1: Any, r2: Any) -> None:
        seen.append(r1.path)
        assert r1.path == r2.path

    with cassette("echo", match_body=False, matchers={"same_path": same_path}) as cas:
        httpx.post(URL, json={"anything": "goes"})
    assert cas.all_played and set(seen) == {"/v1/contacts/batch"}

"""Every request the plugin sends, checked against Braze's published rules.

Braze publishes documents only, so the rules live in :mod:`.vendor_spec`, each with the
URL of the page stating it. Requests are made through conn's write path
(``write_records``) to a loopback server answering like Braze; the hand-written cassettes
must pass the same checks. Also here: the batch size setting (75 objects a request by
default, 50 for "Monthly Active Users CY 24-25" contracts).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conn.errors import ConfigError
from conn.testing.harness import write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_braze.destination import BrazeDestination

from .vendor_spec import RULES, request_errors

CASSETTES = Path(__file__).parent / "cassettes"
KEY = "braze-spec-rest-key-0001"


def braze(req: RecordedRequest, srv: FaultServer) -> Reply:
    if req.path == "/users/delete":
        return Reply(201, json={"deleted": 1, "message": "success"})
    return Reply(201, json={"message": "success"})


def make(url: str, **config: Any) -> BrazeDestination:
    cfg = {"api_key": KEY, "rest_endpoint": url, "app_id": "app-1",
           "custom_attributes": {"ltv": {"type": "number"}, "vip": {"type": "boolean"},
                                 "seen": {"type": "datetime"}}, **config}
    BrazeDestination.validate_config(cfg)
    return BrazeDestination(cfg, instance="braze")


def test_batch_size_defaults_to_75_and_is_configurable(fault_server: FaultServer) -> None:
    fault_server.configure(handler=braze)
    assert make(fault_server.url).object("users").capabilities.batch_size == 75
    dest = make(fault_server.url, batch_size=50)
    assert dest.object("users").capabilities.batch_size == 50
    assert dest.object("events").capabilities.batch_size == 50
    res = write_records(dest, "users", [{"external_id": f"u-{i}", "ltv": 1.0}
                                        for i in range(120)])
    assert res.rejected == [] and res.pending == []
    assert sorted(len(r.json["attributes"]) for r in fault_server.requests) == [20, 50, 50]
    for bad in (0, 76):
        with pytest.raises(ConfigError):
            BrazeDestination.validate_config({"api_key": KEY, "rest_endpoint": "https://x",
                                              "batch_size": bad})


def test_the_checks_catch_what_braze_forbids() -> None:
    ok = {"attributes": [{"external_id": "u", "_update_existing_only": False}]}
    assert request_errors("POST", "/users/track", {}, ok) == []
    assert request_errors("POST", "/users/track", {},
                          {"attributes": [{"external_id": str(i)} for i in range(51)]},
                          track_limit=50)
    assert request_errors("POST", "/users/track", {}, {"attributes": [{"ltv": 1}]})
    assert request_errors("POST", "/users/track", {},
                          {"attributes": [{"external_id": "u", "_update_existing_only": 0}]})
    assert request_errors("POST", "/users/track", {}, {"events": [
        {"external_id": "u", "name": "x", "time": "yesterday"}]})
    assert request_errors("POST", "/users/delete", {},
                          {"external_ids": ["a"], "braze_ids": ["b"]})
    assert request_errors("POST", "/users/delete", {}, {"external_ids": ["a"] * 51})
    assert request_errors("POST", "/users/track", {"Authorization": "Basic x"}, ok)
    assert all(url.startswith("https://www.braze.com/docs/") for _, url in RULES.values())


@pytest.mark.parametrize("batch_size", [75, 50])
def test_every_request_of_the_write_path_follows_braze(fault_server: FaultServer,
                                                       batch_size: int) -> None:
    fault_server.configure(handler=braze)
    dest = make(fault_server.url, batch_size=batch_size)
    t0 = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
    users = [{"external_id": f"u-{i}", "email": f"u{i}@example.com", "ltv": i / 7,
              "vip": bool(i % 2), "seen": t0, "first_name": "Zoë" if i % 3 else None}
             for i in range(160)]
    for op in ("upsert", "update"):
        assert not write_records(dest, "users", users, operation=op).rejected
    assert not write_records(dest, "users", users, match_key="email").rejected
    events = [{"event_id": f"e{i}", "external_id": f"u-{i}", "name": "used",
               "time": t0 + dt.timedelta(seconds=i), "feature": "x", "score": i}
              for i in range(160)]
    assert not write_records(dest, "events", events, operation="append").rejected
    for key in ("external_id", "email", "braze_id"):
        rows = [{key: f"{key}-{i}"} for i in range(120)]
        assert not write_records(dest, "users", rows, operation="delete",
                                 match_key=key).rejected
    dest.check()
    problems = [e for r in fault_server.requests
                for e in request_errors(r.method, r.path, r.headers, r.body,
                                        track_limit=batch_size)
                if r.json != {"attributes": []}]  # the check call: see README
    assert problems == []
    assert {r.path for r in fault_server.requests} == {"/users/track", "/users/delete"}


def test_every_cassette_request_follows_braze() -> None:
    problems, checked = [], 0
    for path in sorted(CASSETTES.glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            req = interaction["request"]
            if json.loads(req["body"]) == {"attributes": []}:
                continue  # the check call, refused by design (README: check)
            headers = {k: v[0] for k, v in (req.get("headers") or {}).items()}
            problems += [f"{path.name}: {e}" for e in request_errors(
                req["method"], urlsplit(req["uri"]).path, headers, req["body"])]
            checked += 1
    assert checked >= 7 and problems == []

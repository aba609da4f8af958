"""Tests of the ``braze`` destination: objects, config, dry-run descriptions, and a
Braze emulator on the local fault server (127.0.0.1) with injected 5xx and 429.
Cassette replays are in ``test_cassettes.py``.
"""

from __future__ import annotations

import importlib.metadata
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conn.errors import ConfigError
from conn.testing.harness import make_request, write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_braze.destination import BrazeDestination

from .conftest import KEY, make


def test_entry_point_objects_and_config() -> None:
    eps = importlib.metadata.entry_points(group="conn.destinations")
    assert next(e for e in eps if e.name == "braze").value == "conn_destination_braze.plugin"
    dest = make()
    users, events = dest.object("users"), dest.object("events")
    assert users.identifiers == ("external_id", "email", "braze_id")
    assert users.properties["ltv"]["type"] == ["number", "null"]
    assert users.capabilities.batch_size == 75
    assert users.capabilities.operations() == {"upsert", "update", "delete", "erase"}
    assert "/users/delete" in users.capabilities.erasure
    assert events.capabilities.operations() == {"append"}
    rl = users.capabilities.rate_limit
    assert (rl.requests, rl.per_seconds) == (3000, 3.0)
    assert BrazeDestination.config_schema["properties"]["api_key"]["secret"] is True
    with pytest.raises(ConfigError):
        BrazeDestination.validate_config({"api_key": KEY, "rest_endpoint": "rest.braze.com"})
    from conn.destination import object_schema_errors

    assert not object_schema_errors(users) and not object_schema_errors(events)


def test_describe_requests_batches_and_redacts() -> None:
    dest = make()
    rows = [{"external_id": f"u-{i}", "ltv": float(i)} for i in range(120)]
    calls = dest.describe_requests(make_request(dest, "users", rows, "delete", dry_run=True))
    assert [len(c["json"]["external_ids"]) for c in calls] == [50, 50, 20]
    req = make_request(dest, "users", rows[:2], dry_run=True)
    (d,) = dest.describe_requests(req)
    assert d["path"] == "/users/track" and d["headers"]["Authorization"] == "Bearer ***"
    assert d["json"]["attributes"][1] == {"external_id": "u-1", "ltv": 1.0,
                                          "_update_existing_only": False}
    assert KEY not in json.dumps(d)


# --- fault tests against a local Braze emulator ---------------------------------------------


class BrazeEmulator:
    """/users/track: attributes stored by external_id, events by their event_id property
    (events are not idempotent in Braze: a resent event would be counted twice)."""

    def __init__(self, srv: FaultServer) -> None:
        srv.route("POST", "/users/track", self.track)

    def track(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("authorization") != f"Bearer {KEY}":
            return Reply(401, json={"message": "Invalid API key"})
        body = req.json
        attrs, events = body.get("attributes") or [], body.get("events") or []
        if len(attrs) + len(events) > 75:
            return Reply(400, json={"message": "too many objects"})
        errors = []
        for i, a in enumerate(attrs):
            if not a.get("external_id"):
                errors.append({"type": "'external_id' or 'braze_id' or 'user_alias' is "
                                       "required", "input_array": "attributes", "index": i})
                continue
            srv.store[a["external_id"]] = a
            srv.arrivals[a["external_id"]] += 1
        for e in events:
            eid = e["properties"]["event_id"]
            srv.store[eid] = e
            srv.arrivals[eid] += 1
        out: dict[str, Any] = {"message": "success", "attributes_processed": len(attrs),
                               "events_processed": len(events)}
        if errors:
            out["errors"] = errors
        return Reply(201, json=out)


@pytest.mark.parametrize("object_name", ["users", "events"])
def test_faults_every_row_arrives_exactly_once(fault_server: FaultServer,
                                               object_name: str) -> None:
    BrazeEmulator(fault_server)
    fault_server.configure(seed=5, error_rate=0.05, throttle_rate=0.10, retry_after=0.01)
    dest = make(rest_endpoint=fault_server.url, concurrency=4,
                retry={"base_delay": 0.01, "max_attempts": 3})
    t0 = datetime(2025, 5, 1, tzinfo=UTC)
    if object_name == "users":
        rows = [{"external_id": f"u-{i}", "ltv": float(i)} for i in range(3000)]
        key, op = "external_id", "upsert"
    else:
        rows = [{"event_id": f"ev-{i}", "external_id": f"u-{i % 50}", "name": "used_feature",
                 "time": t0 + timedelta(seconds=i), "feature": f"f{i % 7}"}
                for i in range(3000)]
        key, op = "event_id", "append"
    acked: set[str] = set()
    todo = list(range(len(rows)))
    for _ in range(10):  # each pass is the next run: only pending rows are sent again
        res = write_records(dest, object_name, [rows[i] for i in todo], operation=op)
        assert res.rejected == []
        pending = {todo[i] for i in res.pending}
        newly = {rows[i][key] for i in todo if i not in pending}
        assert not newly & acked, "an acknowledged row was sent again"
        acked |= newly
        todo = sorted(pending)
        if not todo:
            break
    assert not todo
    fault_server.assert_exactly_once(r[key] for r in rows)
    faults = [r.fault for r in fault_server.requests]
    assert faults.count("throttle") > 0 and faults.count("error") > 0


class BrazeDeleteEmulator:
    """/users/delete as documented: one identifier kind, at most 50, answers the number
    of users it found and deleted; ``"bad"`` in an id makes Braze refuse the request."""

    def __init__(self, srv: FaultServer) -> None:
        srv.route("POST", "/users/delete", self.delete)

    def delete(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("authorization") != f"Bearer {KEY}":
            return Reply(401, json={"message": "Invalid API key"})
        ids = (req.json or {}).get("external_ids") or []
        if len(ids) > 50 or len(req.json or {}) != 1:
            return Reply(400, json={"message": "Only one of external_ids, ... (at most 50)"})
        if any("bad" in i for i in ids):
            return Reply(400, json={"message": "Invalid external_ids"})
        found = [i for i in ids if srv.store.pop(i, None) is not None]
        for i in ids:
            srv.arrivals[i] += 1
        return Reply(201, json={"deleted": len(found), "message": "success"})


def test_erase_faults_retried_unknown_users_acknowledged(fault_server: FaultServer) -> None:
    """``erase`` goes to /users/delete in calls of at most 50; 429 and 5xx are retried;
    users Braze never held are acknowledged (Braze counts only those it deleted)."""
    BrazeDeleteEmulator(fault_server)
    fault_server.store.update({f"u-{i}": {} for i in range(0, 120, 2)})
    fault_server.configure(seed=3, error_rate=0.1, throttle_rate=0.2, retry_after=0.01)
    dest = make(rest_endpoint=fault_server.url, retry={"base_delay": 0.01, "max_attempts": 8})
    rows = [{"external_id": f"u-{i}"} for i in range(120)]
    res = write_records(dest, "users", rows, operation="erase")
    assert res.rejected == [] and res.pending == [] and res.error is None
    assert fault_server.store == {}
    ok = [r for r in fault_server.requests if not r.fault]
    sizes = [len(r.json["external_ids"]) for r in ok]
    assert max(sizes) <= 50 and sum(sizes) == 120
    faults = [r.fault for r in fault_server.requests]
    assert faults.count("throttle") > 0 and faults.count("error") > 0


def test_erase_refused_request_rejects_its_users_and_auth_stops(
        fault_server: FaultServer) -> None:
    BrazeDeleteEmulator(fault_server)
    dest = make(rest_endpoint=fault_server.url, retry={"base_delay": 0.01})
    res = write_records(dest, "users", [{"external_id": "u-1"}, {"external_id": "bad-2"}],
                        operation="erase")
    assert [r.index for r in res.rejected] == [0, 1] and res.pending == []
    assert "Invalid external_ids" in res.rejected[0].reason
    wrong = make(rest_endpoint=fault_server.url, api_key="wrong-key-000")
    res = write_records(wrong, "users", [{"external_id": "u-1"}], operation="erase")
    assert res.pending == [0] and res.rejected == [] and "refused" in str(res.error)

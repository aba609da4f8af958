"""The object ``custom_events`` (``mode: events``): the documented request (cassette
written from Braze's pages, ``cassettes/custom_events.yaml``), Braze's published rules,
and a loopback emulator under throttling and errors: every event arrives, and an event
sent again carries the same ``conn_event_id`` (Braze itself does not deduplicate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conn.testing.harness import event_batch, make_request
from conn.testing.http import FaultServer, RecordedRequest, Reply

from .conftest import KEY, make
from .vendor_spec import request_errors

WHEN = "2026-12-01T10:00:01+00:00"
ROWS = [{"external_id": "u-1", "feature": "export", "error_code": 502},
        {"external_id": "u-2", "feature": "import", "error_code": 504}]


def test_custom_events_object_declares_events_mode() -> None:
    obj = make().object("custom_events")
    assert obj.capabilities.operations() == {"event"}
    assert obj.identifiers == ("external_id", "email", "braze_id")
    assert obj.capabilities.batch_size == 75
    assert make(batch_size=50).object("custom_events").capabilities.batch_size == 50


def test_send_custom_events_as_documented(cassette: Callable[[str], Any]) -> None:
    dest = make(app_id="app-123")
    req = make_request(dest, "custom_events", event_batch(ROWS, "feature_failed", WHEN),
                       "event")
    with cassette("custom_events") as cas:
        res = dest.write(req)
    assert cas.all_played and res.rejected == [] and res.pending == []
    (call,) = dest.describe_requests(req)
    assert request_errors("POST", "/users/track",
                          {"Authorization": f"Bearer {KEY}",
                           "Content-Type": "application/json"}, call["json"]) == []


class TrackEmulator:
    """/users/track for events: at most 75 objects; every arrival of an event is logged
    (Braze does not deduplicate), keyed here by conn_event_id to count copies."""

    def __init__(self, srv: FaultServer) -> None:
        self.logged: list[str] = []
        srv.route("POST", "/users/track", self.track)

    def track(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        events = req.json.get("events") or []
        if len(events) > 75:
            return Reply(400, json={"message": "too many objects"})
        self.logged += [e["properties"]["conn_event_id"] for e in events]
        return Reply(201, json={"message": "success", "events_processed": len(events)})


def test_faults_every_event_arrives_and_keeps_its_id(fault_server: FaultServer) -> None:
    braze = TrackEmulator(fault_server)
    fault_server.configure(seed=11, error_rate=0.1, throttle_rate=0.1, retry_after=0.01)
    dest = make(rest_endpoint=fault_server.url, concurrency=4,
                retry={"base_delay": 0.01, "max_attempts": 6})
    rows = [{"external_id": f"u-{i % 40}", "feature": f"f{i % 7}"} for i in range(600)]
    req = make_request(dest, "custom_events", event_batch(rows, "feature_failed", WHEN),
                       "event", keys=[f"row-{i}" for i in range(600)])
    res = dest.write(req)
    assert res.rejected == [] and res.pending == []
    ids = req.idempotency_keys()
    assert sorted(braze.logged) == sorted(ids)  # each event once, with its id
    again = make_request(dest, "custom_events", event_batch(rows, "feature_failed", WHEN),
                         "event", keys=[f"row-{i}" for i in range(600)])
    assert again.idempotency_keys() == ids
    assert [e for r in fault_server.requests if r.status == 201
            for e in request_errors(r.method, r.path, r.headers, r.body)] == []

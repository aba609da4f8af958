"""Custom behavioral events (object ``events``, ``mode: events``): the documented request
(cassette written from HubSpot's pages, see ``cassettes/send_events.yaml``), event names
without a fully qualified name, and a loopback emulator that keeps the first occurrence of
each ``uuid`` as HubSpot documents, under throttling, errors and refused occurrences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conn.testing.harness import event_batch, make_request
from conn.testing.http import FaultServer, RecordedRequest, Reply

from .conftest import make

NAMES = {"feature_failed": "pe1234567_feature_failed"}
ROWS = [{"email": "ada@example.com", "feature": "export", "attempts": 3},
        {"email": "bob@example.com", "feature": "import", "attempts": 1}]
WHEN = "2026-12-01T10:00:01+00:00"


def test_events_object_declares_events_mode_only() -> None:
    obj = make().object("events")
    assert obj.capabilities.modes == frozenset({"events"})
    assert obj.capabilities.operations() == frozenset({"event"})
    assert obj.identifiers == ("email", "objectId", "utk")


def test_send_events_as_documented(cassette: Callable[[str], Any]) -> None:
    dest = make(event_names=NAMES)
    req = make_request(dest, "events", event_batch(ROWS, "feature_failed", WHEN), "event")
    with cassette("send_events") as cas:
        res = dest.write(req)
    assert cas.all_played and res.rejected == [] and res.pending == []
    # The uuids are the events' ids (the requests' idempotency keys) in UUID form.
    assert [k[:8] for k in req.idempotency_keys()] == ["76ae98d1", "6a49d06d"]


def test_an_event_name_without_a_hubspot_name_is_rejected_unsent(
        fault_server: FaultServer) -> None:
    dest = make(base_url=fault_server.url, event_names=NAMES)
    batch = event_batch(ROWS[:1], "feature_failed", WHEN)
    other = event_batch(ROWS[1:], "trial_started", WHEN)
    import pyarrow as pa

    both = pa.Table.from_batches([batch, other]).combine_chunks().to_batches()[0]
    res = dest.write(make_request(dest, "events", both, "event"))
    [rej] = res.rejected
    assert rej.index == 1 and "config.event_names" in rej.reason
    [sent] = fault_server.requests
    assert [i["email"] for i in sent.json["inputs"]] == ["ada@example.com"]


class EventsEmulator:
    """/events/v3/send/batch as documented: 204; the first occurrence of a uuid is kept
    and later ones are not; a property value over 50 characters refuses the call (400)."""

    def __init__(self, srv: FaultServer) -> None:
        self.kept: dict[str, dict[str, Any]] = {}
        self.arrivals = 0
        srv.route("POST", "/events/v3/send/batch", self.send)

    def send(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        inputs = req.json["inputs"]
        if any(len(v) > 50 for i in inputs for v in i["properties"].values()):
            return Reply(400, json={"status": "error", "category": "VALIDATION_ERROR",
                                    "message": "property value exceeds 50 characters"})
        for item in inputs:
            self.arrivals += 1
            self.kept.setdefault(item["uuid"], item)
        return Reply(204)


def test_faults_every_event_kept_once_and_resent_with_its_uuid(
        fault_server: FaultServer) -> None:
    hub = EventsEmulator(fault_server)
    fault_server.configure(seed=3, error_rate=0.1, throttle_rate=0.1, retry_after=0.01)
    dest = make(base_url=fault_server.url, event_names=NAMES, concurrency=4,
                api_limit_packs=1)
    rows = [{"email": f"p{i}@example.com", "feature": "x" * (60 if i == 7 else 3),
             "attempts": i} for i in range(250)]
    req = make_request(dest, "events", event_batch(rows, "feature_failed", WHEN), "event")
    res = dest.write(req)
    assert [r.index for r in res.rejected] == [7] and res.pending == []
    assert "50 characters" in res.rejected[0].reason
    assert len(hub.kept) == 249
    # Sending the same events again (a crash before conn recorded the answers) carries
    # the same uuids: HubSpot keeps one occurrence of each.
    again = make_request(dest, "events", event_batch(rows, "feature_failed", WHEN), "event")
    assert dest.write(again).pending == []
    assert len(hub.kept) == 249 and hub.arrivals >= 2 * 249
    assert {i["uuid"].replace("-", "") for i in hub.kept.values()} == \
        {k for n, k in enumerate(req.idempotency_keys()) if n != 7}
    # Every request follows HubSpot's own client's model of the call.
    from .vendor_spec import request_errors

    assert [e for r in fault_server.requests
            for e in request_errors(r.method, r.path, r.headers, r.body)] == []

"""Tests of the ``hubspot`` destination: objects, config, dry-run descriptions, record
locks and rate limits, and a HubSpot emulator on the local fault server (127.0.0.1) that
injects 5xx and 429 responses. Cassette replays are in ``test_cassettes.py``.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import pytest
from conn.errors import ConfigError
from conn.testing.harness import make_request, write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_hubspot.destination import HubSpotDestination

from .conftest import TOKEN, make


def test_entry_point_and_objects() -> None:
    eps = importlib.metadata.entry_points(group="conn.destinations")
    ep = next(e for e in eps if e.name == "hubspot")
    assert ep.value == "conn_destination_hubspot.plugin"
    dest = make(tier="professional")
    contacts = dest.object("contacts")
    assert contacts.identifiers[0] == "email"
    assert contacts.properties["ltv"]["type"] == ["number", "null"]
    assert contacts.personal["email"] == "email"
    caps = contacts.capabilities
    assert caps.batch_size == 100 and caps.supports_delete
    assert caps.rate_limit.requests == 190 and caps.rate_limit.per_seconds == 10
    assert caps.rate_limit.daily == 625_000
    assert "erase" in caps.operations() and "GDPR delete" in caps.erasure
    companies = dest.object("companies")
    assert "warehouse_id" in companies.identifiers
    assert "erase" not in companies.capabilities.operations()
    from conn.destination import object_schema_errors

    assert not object_schema_errors(contacts) and not object_schema_errors(companies)


def test_config_schema_marks_the_token_secret() -> None:
    assert HubSpotDestination.config_schema["properties"]["access_token"]["secret"] is True
    with pytest.raises(ConfigError):
        HubSpotDestination.validate_config({"access_token": TOKEN, "tier": "gold"})


def test_describe_requests_is_exact_and_redacted() -> None:
    dest = make()
    rows = [{"email": "ada@example.com", "ltv": 1.5}]
    (d,) = dest.describe_requests(make_request(dest, "contacts", rows, dry_run=True))
    assert d["method"] == "POST" and d["path"] == "/crm/v3/objects/contacts/batch/upsert"
    assert d["json"] == {"inputs": [{"id": "ada@example.com", "idProperty": "email",
                                     "properties": {"ltv": "1.5"}, "objectWriteTraceId": "0"}]}
    assert d["headers"]["Authorization"] == "Bearer ***"
    assert TOKEN not in json.dumps(d)
    dreq = make_request(dest, "contacts", rows, "delete", dry_run=True)
    read, archive = dest.describe_requests(dreq)
    assert read["path"].endswith("/batch/read") and archive["path"].endswith("/batch/archive")
    (erase,) = dest.describe_requests(make_request(dest, "contacts", rows, "erase",
                                                   dry_run=True))
    assert erase["path"] == "/crm/v3/objects/contacts/gdpr-delete"
    assert erase["json"] == {"objectId": "ada@example.com", "idProperty": "email"}


# --- fault test against a local HubSpot emulator ----------------------------------------------


class HubSpotEmulator:
    """Batch upsert/read/archive of contacts keyed by e-mail, on the fault server."""

    def __init__(self, srv: FaultServer) -> None:
        self.ids: dict[str, str] = {}
        base = "/crm/v3/objects/contacts/batch"
        srv.route("POST", f"{base}/upsert", self.upsert)

    def upsert(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("authorization") != f"Bearer {TOKEN}":
            return Reply(401, json={"status": "error", "category": "INVALID_AUTHENTICATION",
                                    "message": "Authentication credentials not found."})
        results, errors = [], []
        for item in req.json["inputs"]:
            email = str(item["id"]).lower()
            if item.get("idProperty") != "email":
                return Reply(400, json={"status": "error", "category": "VALIDATION_ERROR",
                                        "message": "idProperty must be unique"})
            if "@" not in email:
                errors.append({"status": "error", "category": "VALIDATION_ERROR",
                               "message": f"Email address {email} is invalid",
                               "context": {"ids": [item["id"]]}})
                continue
            new = email not in self.ids
            self.ids.setdefault(email, str(1000 + len(self.ids)))
            srv.store[email] = {**srv.store.get(email, {}), **item["properties"]}
            srv.arrivals[email] += 1
            results.append({"id": self.ids[email], "new": new,
                            "properties": {"email": email, **item["properties"]}})
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body.update(numErrors=len(errors), errors=errors)
        return Reply(207 if errors else 200, json=body)


def test_faults_every_row_arrives_exactly_once(fault_server: FaultServer) -> None:
    HubSpotEmulator(fault_server)
    fault_server.configure(seed=7, error_rate=0.05, throttle_rate=0.10, retry_after=0.01)
    dest = make(base_url=fault_server.url, api_limit_packs=1, concurrency=4,
                retry={"base_delay": 0.01, "max_attempts": 3})
    rows = [{"email": f"user{i}@example.com", "ltv": float(i), "health_score": i % 100}
            for i in range(2000)]
    acked: set[str] = set()
    todo = list(range(len(rows)))
    for _ in range(10):  # each pass is what the next run would resend: pending rows only
        res = write_records(dest, "contacts", [rows[i] for i in todo], match_key="email")
        assert res.rejected == []
        pending = {todo[i] for i in res.pending}
        newly = {rows[i]["email"] for i in todo if i not in pending}
        assert not newly & acked, "an acknowledged row was sent again"
        acked |= newly
        todo = sorted(pending)
        if not todo:
            break
    assert not todo
    fault_server.assert_exactly_once(r["email"] for r in rows)
    faults = [r.fault for r in fault_server.requests]
    assert faults.count("throttle") > 0 and faults.count("error") > 0
    # every successfully handled request carried rows not handled before
    sent = [item["id"] for r in fault_server.requests if r.status == 200
            for item in r.json["inputs"]]
    assert len(sent) == len(set(sent)) == len(rows)
    assert fault_server.store["user7@example.com"] == {"ltv": "7.0", "health_score": "7"}


# --- 423 Locked and the API limit increase pack ----------------------------------------------


def _locked_then_ok(locks: int) -> Any:
    """A batch upsert answering ``423 Locked`` ``locks`` times, then 200."""
    state = {"calls": 0}

    def handler(req: RecordedRequest, srv: FaultServer) -> Reply:
        state["calls"] += 1
        if state["calls"] <= locks:
            return Reply(423, json={"status": "error", "category": "LOCKED",
                                    "message": "Record is locked by another request"})
        return Reply(200, json={"status": "COMPLETE", "results": [
            {"id": str(n), "properties": {}, "objectWriteTraceId": i.get("objectWriteTraceId")}
            for n, i in enumerate(req.json["inputs"])]})

    return handler, state


def test_locked_records_are_waited_for_not_rejected(fault_server: FaultServer) -> None:
    # https://developers.hubspot.com/docs/api-reference/error-handling: 423 while records
    # are locked (~2 s); wait and retry. The rows are fine: never split, never rejected.
    handler, state = _locked_then_ok(locks=2)
    fault_server.configure(handler=handler)
    dest = make(base_url=fault_server.url)
    waits: list[float] = []
    dest.sleep = waits.append
    rows = [{"email": f"u{i}@example.com", "ltv": float(i)} for i in range(100)]
    res = write_records(dest, "contacts", rows, match_key="email")
    assert res.rejected == [] and res.pending == []
    assert state["calls"] == 3 and len(waits) == 2 and all(2.0 <= w <= 3.0 for w in waits)
    assert all(len(r.json["inputs"]) == 100 for r in fault_server.requests)


def test_a_lock_that_lasts_leaves_rows_pending(fault_server: FaultServer) -> None:
    handler, state = _locked_then_ok(locks=1000)
    fault_server.configure(handler=handler)
    dest = make(base_url=fault_server.url)
    dest.sleep = lambda s: None
    res = write_records(dest, "contacts", [{"email": "ada@example.com", "ltv": 1.0}],
                        match_key="email")
    assert res.rejected == [] and res.pending == [0]
    assert "423" in str(res.error) and state["calls"] == 6


@pytest.mark.parametrize(("tier", "packs", "per_10s", "daily"), [
    ("professional", 0, 190, 625_000), ("professional", 1, 200, 1_625_000),
    ("enterprise", 2, 200, 3_000_000), ("free", 1, 200, 1_250_000)])
def test_api_limit_increase_packs_follow_the_usage_guidelines(
        tier: str, packs: int, per_10s: int, daily: int) -> None:
    # https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines:
    # a pack gives 200 requests per 10 s and 1,000,000 more a day, on top of the tier.
    rl = make(tier=tier, api_limit_packs=packs).rate_limit()
    assert (rl.requests, rl.per_seconds, rl.daily) == (per_10s, 10.0, daily)
    with pytest.raises(ConfigError):
        HubSpotDestination.validate_config({"access_token": TOKEN, "api_limit_packs": 3})
    with pytest.raises(ConfigError):
        HubSpotDestination.validate_config({"access_token": TOKEN,
                                            "tier": "api_limit_increase"})


def test_erase_faults_retried_refusals_per_contact_auth_stops(
        fault_server: FaultServer) -> None:
    """GDPR delete on the loopback server: 429 (SECONDLY) and 5xx are retried; a 400 for
    one contact rejects that contact with HubSpot's message and the rest are erased; a
    404 (already gone) is acknowledged; a refused token leaves every contact pending."""
    erased: list[str] = []

    def gdpr(req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("authorization") != f"Bearer {TOKEN}":
            return Reply(401, json={"status": "error", "category": "INVALID_AUTHENTICATION",
                                    "message": "Authentication credentials not found."})
        oid = req.json["objectId"]
        if oid.startswith("bad"):
            return Reply(400, json={"status": "error", "category": "VALIDATION_ERROR",
                                    "message": f"Invalid objectId {oid}"})
        if oid.startswith("gone"):
            return Reply(404, json={"status": "error", "category": "OBJECT_NOT_FOUND",
                                    "message": "Object not found."})
        erased.append(oid)
        return Reply(204)

    fault_server.route("POST", "/crm/v3/objects/contacts/gdpr-delete", gdpr)
    fault_server.configure(seed=11, error_rate=0.15, throttle_rate=0.15, retry_after=0.01)
    dest = make(base_url=fault_server.url, retry={"base_delay": 0.01, "max_attempts": 10})
    rows = [{"hs_object_id": f"{i}"} for i in range(30)] + \
        [{"hs_object_id": "bad-1"}, {"hs_object_id": "gone-1"}]
    res = write_records(dest, "contacts", rows, operation="erase", match_key="hs_object_id")
    assert res.pending == [] and res.error is None
    assert [(r.index, r.retryable) for r in res.rejected] == [(30, False)]
    assert res.rejected[0].reason.endswith("VALIDATION_ERROR: Invalid objectId bad-1")
    assert sorted(erased, key=int) == [str(i) for i in range(30)]
    faults = [r.fault for r in fault_server.requests]
    assert faults.count("throttle") > 0 and faults.count("error") > 0
    fault_server.configure(error_rate=0.0, throttle_rate=0.0)
    wrong = make(base_url=fault_server.url, access_token="pat-wrong-token-000")
    res = write_records(wrong, "contacts", rows[:3], operation="erase",
                        match_key="hs_object_id")
    assert res.rejected == [] and sorted(res.pending) == [0, 1, 2]
    assert "refused the credentials" in str(res.error)


def test_a_400_naming_inputs_keeps_its_exchange_after_the_resend(
        fault_server: FaultServer) -> None:
    """HubSpot refuses a batch with 400 naming the bad inputs; conn rejects those and
    resends the rest. Each rejection keeps the 400 that named it, not the resend's 200."""
    calls: list[int] = []

    def handler(req: RecordedRequest, srv: FaultServer) -> Reply:
        inputs = req.json["inputs"]
        calls.append(len(inputs))
        bad = [i["objectWriteTraceId"] for i in inputs
               if i["properties"].get("health_score") == "250"]
        if bad:
            return Reply(400, json={"status": "error", "category": "VALIDATION_ERROR",
                                    "message": "Property values were not valid",
                                    "context": {"objectWriteTraceId": bad}})
        return Reply(200, json={"status": "COMPLETE", "results": [
            {"id": str(n), "properties": {}, "objectWriteTraceId": i["objectWriteTraceId"]}
            for n, i in enumerate(inputs)]})

    fault_server.route("POST", "/crm/v3/objects/contacts/batch/upsert", handler)
    rows = [{"email": f"u{i}@example.com", "health_score": 250 if i in (1, 3) else i}
            for i in range(5)]
    res = write_records(make(base_url=fault_server.url), "contacts", rows, match_key="email")
    assert calls == [5, 3] and res.pending == []
    assert [r.index for r in res.rejected] == [1, 3]
    for r in res.rejected:
        assert (r.excerpt["status"], r.excerpt["path"]) == \
            (400, "/crm/v3/objects/contacts/batch/upsert")
        assert json.loads(r.excerpt["request"])["id"] == f"u{r.index}@example.com"
        assert "VALIDATION_ERROR" in r.excerpt["response"]

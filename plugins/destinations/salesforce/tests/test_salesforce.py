"""Tests of the ``salesforce`` destination: objects, config, dry-run descriptions, and a
Salesforce emulator (token endpoint and Collections upsert) on the local fault server
(127.0.0.1) with injected 5xx and 429. Cassette replays are in ``test_cassettes.py``.
"""

from __future__ import annotations

import importlib.metadata
import json
from urllib.parse import parse_qs

import pytest
from conn.errors import ConfigError
from conn.testing.harness import make_request, write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_salesforce.destination import SalesforceDestination

from .conftest import ADA, OBJECTS, SECRETS, make


def test_entry_point_objects_and_config() -> None:
    eps = importlib.metadata.entry_points(group="conn.destinations")
    assert next(e for e in eps if e.name == "salesforce").value == \
        "conn_destination_salesforce.plugin"
    obj = make().object("Contact")
    assert obj.identifiers == ("Warehouse_Id__c",)
    assert obj.capabilities.batch_size == 10_000  # bulk possible: choose per call
    # No person-erasure API (README): conn forget deletes (Recycle Bin), no "erase".
    assert obj.capabilities.operations() == {"upsert", "delete"}
    assert obj.capabilities.erasure == ""
    assert obj.personal["Email"] == "email"
    small = make(objects={"Lead": {"external_id": "Ext__c", "bulk_threshold": 0}})
    assert small.object("Lead").capabilities.batch_size == 200
    props = SalesforceDestination.config_schema["properties"]
    assert all(props[k]["secret"] for k in SECRETS)
    with pytest.raises(ConfigError):
        SalesforceDestination.validate_config(
            {**SECRETS, "objects": {"Contact; DROP": {"external_id": "x"}}})
    with pytest.raises(ConfigError, match="refresh_token"):
        SalesforceDestination({"client_id": "a", "client_secret": "b", "objects": OBJECTS})


def test_describe_requests_is_exact_and_redacted() -> None:
    dest = make(instance_url="https://acme.my.salesforce.com")
    (d,) = dest.describe_requests(make_request(dest, "Contact", [ADA], dry_run=True))
    assert d["method"] == "PATCH"
    assert d["path"] == "/services/data/v62.0/composite/sobjects/Contact/Warehouse_Id__c"
    assert d["json"] == {"allOrNone": False,
                         "records": [{"attributes": {"type": "Contact"}, **ADA}]}
    assert d["headers"]["Authorization"] == "Bearer ***"
    assert not any(v in json.dumps(d) for v in SECRETS.values())
    dreq = make_request(dest, "Contact", [ADA], "delete", dry_run=True)
    query, delete = dest.describe_requests(dreq)
    assert query["query"] == ("SELECT Id, Warehouse_Id__c FROM Contact WHERE "
                              "Warehouse_Id__c IN ('W-1')")
    assert delete["method"] == "DELETE"


# --- fault test against a local Salesforce emulator --------------------------------------------


class SalesforceEmulator:
    """Token endpoint (never faulted) and Collections upsert keyed by external id."""

    PATH = "/services/data/v62.0/composite/sobjects/Contact/Warehouse_Id__c"

    def __init__(self, srv: FaultServer) -> None:
        self.ids: dict[str, str] = {}
        srv.route("POST", "/services/oauth2/token", self.token, faults=False)
        srv.route("PATCH", self.PATH, self.upsert)

    def token(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if form.get("refresh_token") != SECRETS["refresh_token"]:
            return Reply(400, json={"error": "invalid_grant", "error_description": "bad"})
        return Reply(200, json={"access_token": "00Dfault!access", "instance_url": srv.url,
                                "token_type": "Bearer", "issued_at": "1746086400000"})

    def upsert(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.header("authorization") != "Bearer 00Dfault!access":
            return Reply(401, json=[{"message": "Session expired or invalid",
                                     "errorCode": "INVALID_SESSION_ID"}])
        body = req.json
        if body.get("allOrNone") is not False or len(body["records"]) > 200:
            return Reply(400, json=[{"message": "bad request", "errorCode": "MALFORMED"}])
        out = []
        for rec in body["records"]:
            assert rec["attributes"] == {"type": "Contact"}
            key = rec["Warehouse_Id__c"]
            created = key not in self.ids
            self.ids.setdefault(key, f"003{len(self.ids):015d}")
            srv.store[key] = {k: v for k, v in rec.items() if k != "attributes"}
            srv.arrivals[key] += 1
            out.append({"id": self.ids[key], "success": True, "errors": [],
                        "created": created})
        return Reply(200, json=out)


def test_faults_every_row_arrives_exactly_once(fault_server: FaultServer) -> None:
    SalesforceEmulator(fault_server)
    fault_server.configure(seed=11, error_rate=0.05, throttle_rate=0.10, retry_after=0.01)
    dest = make(login_url=fault_server.url, requests_per_second=200, concurrency=4,
                retry={"base_delay": 0.01, "max_attempts": 3},
                objects={"Contact": {**OBJECTS["Contact"], "bulk_threshold": 0}})
    rows = [{"Warehouse_Id__c": f"W-{i}", "Email": f"u{i}@example.com",
             "LastName": f"Name {i}", "LTV__c": float(i)} for i in range(4000)]
    acked: set[str] = set()
    todo = list(range(len(rows)))
    for _ in range(10):  # each pass is the next run: only pending rows are sent again
        res = write_records(dest, "Contact", [rows[i] for i in todo])
        assert res.rejected == []
        pending = {todo[i] for i in res.pending}
        newly = {rows[i]["Warehouse_Id__c"] for i in todo if i not in pending}
        assert not newly & acked, "an acknowledged row was sent again"
        acked |= newly
        todo = sorted(pending)
        if not todo:
            break
    assert not todo
    fault_server.assert_exactly_once(r["Warehouse_Id__c"] for r in rows)
    faults = [r.fault for r in fault_server.requests]
    assert faults.count("throttle") > 0 and faults.count("error") > 0
    assert fault_server.store["W-7"]["LTV__c"] == 7.0

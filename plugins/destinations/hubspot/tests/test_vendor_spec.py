"""Every request the plugin sends, checked against HubSpot's own specification.

The requests are made through conn's write path (``write_records``: gate seal, mapper
seal, ``Destination.write``, ``write_batch``) against a loopback server that answers like
HubSpot and records each request; :mod:`.vendor_spec` then checks it against the models
of ``hubspot-api-client`` (generated from HubSpot's OpenAPI files) and the documented
rules listed there with their URLs. The hand-written cassettes must pass the same checks.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conn.testing.harness import merge_records, write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_hubspot.destination import HubSpotDestination

from .vendor_spec import DOCUMENTED, OPERATIONS, model_errors, request_errors

CASSETTES = Path(__file__).parent / "cassettes"
TOKEN = "pat-na1-vendor-spec-token"


def hubspot(req: RecordedRequest, srv: FaultServer) -> Reply:
    """Answers like HubSpot for every batch operation (records in ``srv.store``)."""
    if req.method == "GET":
        return Reply(200, json={"results": []})
    body = req.json or {}
    verb = req.path.rsplit("/", 1)[-1]
    if verb in ("archive", "gdpr-delete"):
        return Reply(204)
    if verb == "merge":
        return Reply(200, json={"id": body.get("primaryObjectId"), "properties": {},
                                "createdAt": "2025-05-01T10:00:00.000Z",
                                "updatedAt": "2025-05-01T10:00:00.000Z", "archived": False})
    if verb == "read":
        return Reply(200, json={"status": "COMPLETE", "results": [
            {"id": f"rid-{i['id']}", "properties": {body.get("idProperty", "x"): i["id"]}}
            for i in body.get("inputs") or []]})
    results = []
    for n, item in enumerate(body.get("inputs") or []):
        results.append({"id": f"rid-{n}", "properties": item.get("properties") or {},
                        "objectWriteTraceId": item.get("objectWriteTraceId")})
    return Reply(200, json={"status": "COMPLETE", "results": results})


def make(url: str) -> HubSpotDestination:
    cfg = {"access_token": TOKEN, "base_url": url, "retry": {"base_delay": 0.01},
           "custom_properties": {
               "contacts": {"ltv": {"type": "number"}, "visits": {"type": "integer"},
                            "vip": {"type": "boolean"}, "signed_up": {"type": "date"},
                            "last_seen": {"type": "datetime"}},
               "companies": {"warehouse_id": {"type": "string", "unique": True},
                             "arr": {"type": "number"}}}}
    HubSpotDestination.validate_config(cfg)
    return HubSpotDestination(cfg, instance="crm")


ROWS = [
    {"email": "ada@example.com", "firstname": "Ada", "ltv": 1250.5, "visits": 3, "vip": True,
     "signed_up": dt.date(2024, 2, 29), "last_seen": dt.datetime(2025, 5, 1, 10, tzinfo=dt.UTC)},
    {"email": "bob@example.com", "firstname": "Zoë", "ltv": 1e16, "visits": None, "vip": False,
     "signed_up": None, "last_seen": None},
]


def test_the_operation_table_comes_from_hubspots_client() -> None:
    table = {o.name: (o.method, o.template, o.body_model) for o in OPERATIONS}
    assert table["upsert"] == ("POST", "/crm/v3/objects/{objectType}/batch/upsert",
                               "BatchInputSimplePublicObjectBatchInputUpsert")
    assert table["read"][2] == "BatchReadInputSimplePublicObjectId"
    assert table["purge"] == ("POST", "/crm/v3/objects/contacts/gdpr-delete",
                              "PublicGdprDeleteInput")
    assert table["send_batch"] == ("POST", "/events/v3/send/batch",
                                   "BatchedBehavioralEventHttpCompletionRequest")
    assert table["merge"] == ("POST", "/crm/v3/objects/contacts/merge", "PublicMergeInput")
    assert set(table) == {"create", "read", "update", "upsert", "archive", "purge",
                          "merge", "send_batch"}


@pytest.mark.parametrize(("body", "model", "wanted"), [
    ({"inputs": [{"properties": {"ltv": 1.5}}]},
     "BatchInputSimplePublicObjectBatchInputForCreate", "wants str"),
    ({"inputs": [{"id": "a@x.io"}], "idProperty": "email", "properties": ["email"]},
     "BatchReadInputSimplePublicObjectId", "properties_with_history"),
    ({"inputs": [{"id": "a", "properties": {}, "idProperty": "email", "extra": 1}]},
     "BatchInputSimplePublicObjectBatchInputUpsert", "not a field"),
    ({"inputs": [{"properties": {}}]}, "BatchInputSimplePublicObjectBatchInputUpsert",
     "`id`, must not be `None`"),
    ({"inputs": [{"id": 7}]}, "BatchInputSimplePublicObjectId", "wants str"),
    ({"idProperty": "email"}, "PublicGdprDeleteInput", "`object_id`, must not be `None`"),
])
def test_the_checks_catch_what_the_specification_forbids(body: Any, model: str,
                                                          wanted: str) -> None:
    errors = model_errors(body, model)
    assert any(wanted in e for e in errors), errors


def test_documented_rules_are_checked() -> None:
    path = "/crm/v3/objects/contacts/batch/create"
    too_many = {"inputs": [{"associations": [], "properties": {}}] * 101}
    assert any("100 inputs" in e for e in request_errors(
        "POST", path, {}, json.dumps(too_many).encode()))
    no_assoc = {"inputs": [{"properties": {}}]}
    assert any("associations" in e for e in request_errors(
        "POST", path, {}, json.dumps(no_assoc).encode()))
    assert request_errors("POST", path, {"Authorization": "Basic x"},
                          json.dumps({"inputs": []}).encode())
    assert request_errors("DELETE", "/crm/v3/objects/contacts/batch/archive", {}, b"")
    assert all(url.startswith("https://") for _, url in DOCUMENTED.values())


def test_every_request_of_the_write_path_follows_the_specification(
        fault_server: FaultServer) -> None:
    fault_server.configure(handler=hubspot)
    dest = make(fault_server.url)
    dest.check()
    for operation, key in (("insert", "email"), ("upsert", "email"), ("update", "email"),
                           ("upsert", "hs_object_id")):
        rows = [{**r, "hs_object_id": str(900 + i)} if key == "hs_object_id" else r
                for i, r in enumerate(ROWS)]
        res = write_records(dest, "contacts", rows, operation=operation, match_key=key)
        assert not res.rejected and not res.pending, res.error
    res = write_records(dest, "companies", [{"warehouse_id": "W-1", "name": "Acme",
                                             "arr": 12.0}], match_key="warehouse_id")
    assert not res.rejected and not res.pending, res.error
    for key in ("email", "hs_object_id"):
        res = write_records(dest, "contacts", [{key: "ada@example.com" if key == "email"
                                                else "901"}], operation="delete",
                            match_key=key)
        assert not res.rejected and not res.pending, res.error
        res = write_records(dest, "contacts", [{key: "ada@example.com" if key == "email"
                                                else "901"}], operation="erase",
                            match_key=key)
        assert not res.rejected and not res.pending, res.error
    for key, pair in (("email", ["ann@example.com", "ada@example.com"]),
                      ("hs_object_id", ["902", "901"])):
        res = merge_records(dest, "contacts", pair[:1], pair[1:], match_key=key)
        assert not res.rejected and not res.pending, res.error
    dest.close()
    problems = [e for r in fault_server.requests
                for e in request_errors(r.method, r.path, r.headers, r.body)]
    assert problems == []
    used = {o.name for r in fault_server.requests for o in OPERATIONS
            if o.matches(r.method, r.path)}
    assert used == {"create", "read", "update", "upsert", "archive", "purge", "merge"}


def test_every_cassette_request_follows_the_specification() -> None:
    from urllib.parse import urlsplit

    checked = 0
    problems = []
    for path in sorted(CASSETTES.glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            req = interaction["request"]
            headers = {k: v[0] for k, v in (req.get("headers") or {}).items()}
            for e in request_errors(req["method"], urlsplit(req["uri"]).path, headers,
                                    req.get("body")):
                problems.append(f"{path.name}: {e}")
            checked += 1
    assert checked >= 10 and problems == []

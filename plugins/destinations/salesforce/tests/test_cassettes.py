"""Replays of the vcrpy cassettes in ``cassettes/``.

They were written by hand from Salesforce's documented request and response shapes
(OAuth token endpoint, sObject Collections upsert and delete, SOQL query, Bulk API 2.0
ingest, limits: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/,
https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/); they were
**not recorded live** and each starts with the toolkit's marker line
(``conn.testing.http.DOC_CASSETTE_MARKER``). They replay with ``record_mode="none"``, so
no test reaches the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conn.errors import CheckFailed
from conn.testing.harness import write_records
from conn.testing.http import assert_documented_cassette

from .conftest import ADA, CASSETTES, OBJECTS, SECRETS, make


def test_every_cassette_is_marked_as_documented() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) >= 8
    for f in files:
        assert_documented_cassette(f)
        text = f.read_text()
        assert not any(v in text for v in SECRETS.values())


def test_create(cassette: Callable[[str], Any]) -> None:
    rows = [{"Warehouse_Id__c": "W-1", "Email": "ada@example.com", "LastName": "Lovelace",
             "LTV__c": 1250.5},
            {"Warehouse_Id__c": "W-2", "Email": "bob@example.com", "LastName": "Builder",
             "LTV__c": 80.0}]
    with cassette("upsert_create") as cas:
        res = write_records(make(), "Contact", rows)
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_update(cassette: Callable[[str], Any]) -> None:
    rows = [ADA, {"Warehouse_Id__c": "W-2", "Email": "bob@example.com",
                  "LastName": "Builder", "LTV__c": None}]
    with cassette("upsert_update") as cas:
        res = write_records(make(), "Contact", rows)
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_partial_failure(cassette: Callable[[str], Any]) -> None:
    rows = [ADA,
            {"Warehouse_Id__c": "W-2", "Email": "ada@example.com", "LastName": "Builder",
             "LTV__c": 95.5},
            {"Warehouse_Id__c": "W-3", "Email": "cy@example.com", "LastName": "Young",
             "LTV__c": 10.0}]
    with cassette("partial_failure") as cas:
        res = write_records(make(), "Contact", rows)
    assert cas.all_played and res.pending == []
    (rej,) = res.rejected
    assert rej.index == 1 and not rej.retryable
    assert rej.reason.startswith("DUPLICATE_VALUE: duplicate value found") and "[Email]" in \
        rej.reason


def test_rate_limit_then_success(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("rate_limit") as cas:
        res = write_records(dest, "Contact", [ADA])
    assert cas.all_played and res.rejected == [] and res.pending == []
    assert dest.client.stats["throttled"] == 1


def test_request_limit_exceeded_stops(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("request_limit") as cas:
        res = write_records(dest, "Contact", [ADA])
    assert cas.all_played and res.pending == [0] and res.rejected == []
    assert "REQUEST_LIMIT_EXCEEDED" in str(res.error)
    assert dest.client.stats["requests"] == 1


def test_auth_failure(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("auth_failure") as cas:
        with pytest.raises(CheckFailed, match="invalid_grant") as ei:
            dest.check()
        res = write_records(dest, "Contact", [ADA])
    assert cas.all_played and res.pending == [0] and res.rejected == []
    assert not any(v in str(ei.value) + str(res.error) for v in SECRETS.values())


def test_check_refreshes_expired_session(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("session_expired") as cas:
        dest.check()
    assert cas.all_played and dest._auth.refreshes == 2


def test_mirror_delete_by_external_id(cassette: Callable[[str], Any]) -> None:
    with cassette("delete") as cas:
        res = write_records(make(), "Contact",
                            [{"Warehouse_Id__c": "W-1"}, {"Warehouse_Id__c": "W-9"}],
                            operation="delete")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_bulk_api_for_large_writes(cassette: Callable[[str], Any]) -> None:
    objects = {"Contact": {**OBJECTS["Contact"], "bulk_threshold": 3}}
    rows = [ADA,
            {"Warehouse_Id__c": "W-2", "Email": "bob@example.com", "LastName": "Builder",
             "LTV__c": None},
            {"Warehouse_Id__c": "W-3", "Email": "cy@example.com", "LastName": None,
             "LTV__c": 10.0}]
    with cassette("bulk_upsert") as cas:
        res = write_records(make(objects=objects), "Contact", rows)
    assert cas.all_played and res.pending == []
    (rej,) = res.rejected
    assert rej.index == 2 and rej.reason.startswith("REQUIRED_FIELD_MISSING")

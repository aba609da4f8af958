"""Replays of the vcrpy cassettes in ``cassettes/``.

They were written by hand from HubSpot's documented request and response shapes
(https://developers.hubspot.com/docs/guides/api/crm/objects/contacts,
https://developers.hubspot.com/docs/api-reference/error-handling); they were **not
recorded live** and
each starts with the toolkit's marker line (``conn.testing.http.DOC_CASSETTE_MARKER``).
They replay with ``record_mode="none"``, so no test reaches the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conn.errors import CheckFailed
from conn.testing.harness import write_records
from conn.testing.http import assert_documented_cassette

from .conftest import CASSETTES, TOKEN, make


def test_every_cassette_is_marked_as_documented() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) >= 6
    for f in files:
        assert_documented_cassette(f)
        assert TOKEN not in f.read_text()


def test_check_ok(cassette: Callable[[str], Any]) -> None:
    with cassette("check_ok") as cas:
        make().check()
    assert cas.all_played


def test_create(cassette: Callable[[str], Any]) -> None:
    rows = [{"email": "ada@example.com", "firstname": "Ada", "ltv": 1250.5, "health_score": 87},
            {"email": "bob@example.com", "firstname": "Bob", "ltv": 80.0, "health_score": 42}]
    with cassette("create") as cas:
        res = write_records(make(), "contacts", rows, operation="insert")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_upsert_updates_existing(cassette: Callable[[str], Any]) -> None:
    rows = [{"email": "ada@example.com", "ltv": 1300.0, "health_score": 90},
            {"email": "bob@example.com", "ltv": 95.5, "health_score": None}]  # None clears
    with cassette("upsert_update") as cas:
        res = write_records(make(), "contacts", rows, match_key="email")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_partial_failure_maps_errors_to_rows(cassette: Callable[[str], Any]) -> None:
    rows = [{"email": "ada@example.com", "ltv": 1300.0, "health_score": 90,
             "lifecyclestage": "customer"},
            {"email": "bob@example.com", "ltv": 95.5, "health_score": 250,
             "lifecyclestage": "lead"},
            {"email": "cy@example.com", "ltv": 10.0, "health_score": 5,
             "lifecyclestage": "champion"}]
    with cassette("partial_failure") as cas:
        res = write_records(make(), "contacts", rows, match_key="email")
    assert cas.all_played and res.pending == []
    assert [(r.index, r.retryable) for r in res.rejected] == [(1, False), (2, False)]
    assert "250 is above the maximum 100" in res.rejected[0].reason
    assert res.rejected[0].reason.startswith("VALIDATION_ERROR")
    assert "champion was not one of the allowed options" in res.rejected[1].reason
    # Each keeps the exchange that refused it: the batch upsert, HubSpot's 207, that
    # row's input and the start of HubSpot's answer.
    for r, email in zip(res.rejected, ("bob@example.com", "cy@example.com"), strict=True):
        ex = r.excerpt
        assert (ex["method"], ex["path"], ex["status"]) == \
            ("POST", "/crm/v3/objects/contacts/batch/upsert", 207)
        assert json.loads(ex["request"])["id"] == email
        assert "VALIDATION_ERROR" in ex["response"] and TOKEN not in json.dumps(ex)


def test_rate_limit_then_success(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("rate_limit") as cas:
        res = write_records(dest, "contacts",
                            [{"email": "ada@example.com", "ltv": 1300.0, "health_score": 90}])
    assert cas.all_played and res.rejected == [] and res.pending == []
    assert dest.client.stats["throttled"] == 1 and dest.client.stats["retries"] == 1


def test_daily_limit_stops_without_retrying(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("daily_limit") as cas:
        res = write_records(dest, "contacts",
                            [{"email": "ada@example.com", "ltv": 1300.0, "health_score": 90}])
    assert cas.all_played and res.pending == [0] and res.rejected == []
    assert "daily request limit" in str(res.error)
    assert dest.client.stats["requests"] == 1


def test_auth_failure(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("auth_failure") as cas:
        with pytest.raises(CheckFailed, match="INVALID_AUTHENTICATION") as ei:
            dest.check()
        res = write_records(dest, "contacts",
                            [{"email": "ada@example.com", "ltv": 1300.0, "health_score": 90}])
    assert cas.all_played
    assert TOKEN not in str(ei.value)
    # Bad credentials are not the data's fault: the row stays pending, not rejected.
    assert res.pending == [0] and res.rejected == []
    assert "check the private-app token" in str(res.error)


def test_mirror_delete_archives_by_email(cassette: Callable[[str], Any]) -> None:
    with cassette("archive") as cas:
        res = write_records(make(), "contacts",
                            [{"email": "ada@example.com"}, {"email": "gone@example.com"}],
                            operation="delete", match_key="email")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_erase_gdpr_deletes_by_email_and_record_id(cassette: Callable[[str], Any]) -> None:
    """One GDPR delete per contact; a record id HubSpot no longer has (404) is acknowledged
    as erased."""
    dest = make(concurrency=1)
    with cassette("gdpr_delete") as cas:
        by_email = write_records(dest, "contacts", [{"email": "ada@example.com"}],
                                 operation="erase", match_key="email")
        by_id = write_records(dest, "contacts", [{"hs_object_id": "512"},
                                                 {"hs_object_id": "999"}],
                              operation="erase", match_key="hs_object_id")
    assert cas.all_played
    for res in (by_email, by_id):
        assert res.rejected == [] and res.pending == [] and res.error is None


#: A unique custom property holding conn's profile id (the match key of a profile sync).
PROFILE = {"contacts": {"profile_id": {"type": "string", "unique": True}}}


def test_merge_resolves_ids_then_merges_each_pair(cassette: Callable[[str], Any]) -> None:
    """Profile merges (cassette built from HubSpot's documentation): one batch read
    resolves the record ids by ``profile_id``; cat merges into bob; an absorbed contact
    HubSpot does not have counts as merged (no call); a survivor it does not have is
    rejected, retryably, with nothing sent."""
    from conn.testing.harness import merge_records

    with cassette("merge_contacts") as cas:
        res = merge_records(make(custom_properties=PROFILE), "contacts",
                            ["p_cat", "p_gone", "p_ann2"], ["p_bob", "p_bob", "p_missing"],
                            match_key="profile_id")
    assert cas.all_played and res.pending == [] and res.error is None
    assert [(r.index, r.retryable) for r in res.rejected] == [(2, True)]
    assert "profile_id=p_missing) is not in HubSpot" in res.rejected[0].reason


def test_merge_errors_by_record_id(cassette: Callable[[str], Any]) -> None:
    """Matched on ``hs_object_id`` (no read): HubSpot's 400 rejects that pair with its
    message; a 404 (the absorbed contact is gone) counts as merged; a 429 is retried."""
    from conn.testing.harness import merge_records

    dest = make()
    with cassette("merge_errors") as cas:
        res = merge_records(dest, "contacts", ["700", "701", "702"], ["512", "512", "512"],
                            match_key="hs_object_id")
    assert cas.all_played and res.pending == [] and res.error is None
    assert [r.index for r in res.rejected] == [0]
    assert res.rejected[0].reason.startswith("HTTP 400: VALIDATION_ERROR")
    assert "250 merged identities" in res.rejected[0].reason
    ex = res.rejected[0].excerpt
    assert ex is not None and (ex["path"], ex["status"]) == ("/crm/v3/objects/contacts/merge", 400)
    assert dest.client.stats["throttled"] == 1


def test_merge_dry_run_describes_the_calls() -> None:
    import pyarrow as pa
    from conn.pipeline import MERGE_INTO
    from conn.runtime import delivery

    dest = make(custom_properties=PROFILE)
    obj = dest.object("contacts")
    assert "merge" in obj.capabilities.operations() and "contact merge" in \
        obj.capabilities.merges
    assert "merge" not in dest.object("companies").capabilities.operations()
    req = delivery.merge_request("s", obj, pa.array(["p_cat"]), pa.array(["p_bob"]),
                                 "profile_id", True)
    assert req.records.schema.names == ["profile_id", MERGE_INTO]
    calls = dest.describe_requests(req)
    assert [c["path"] for c in calls] == ["/crm/v3/objects/contacts/batch/read",
                                          "/crm/v3/objects/contacts/merge"]
    assert calls[1]["json"] == {"primaryObjectId": "<hs_object_id of profile_id=p_bob>",
                                "objectIdToMerge": "<hs_object_id of profile_id=p_cat>"}
    assert TOKEN not in json.dumps(calls)

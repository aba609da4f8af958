"""Replays of the vcrpy cassettes in ``cassettes/``.

They were written by hand from Braze's documented request and response shapes
(``/users/track``, ``/users/delete``, error bodies:
https://www.braze.com/docs/api/endpoints/user_data/post_user_track,
https://www.braze.com/docs/api/endpoints/user_data/post_user_delete); they were **not
recorded live** and each starts with the toolkit's marker line
(``conn.testing.http.DOC_CASSETTE_MARKER``). They replay with ``record_mode="none"``, so
no test reaches the network.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conn.errors import CheckFailed
from conn.testing.harness import write_records
from conn.testing.http import assert_documented_cassette

from .conftest import CASSETTES, KEY, make


def test_every_cassette_is_marked_as_documented() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) >= 8
    for f in files:
        assert_documented_cassette(f)
        assert KEY not in f.read_text()


def test_check_ok(cassette: Callable[[str], Any]) -> None:
    with cassette("check_ok") as cas:
        make().check()
    assert cas.all_played


def test_create(cassette: Callable[[str], Any]) -> None:
    rows = [{"external_id": "u-1", "email": "ada@example.com", "first_name": "Ada",
             "country": "GB", "ltv": 1250.5},
            {"external_id": "u-2", "email": "bob@example.com", "first_name": "Bob",
             "country": "US", "ltv": 80.0}]
    with cassette("create") as cas:
        res = write_records(make(), "users", rows)
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_update_only(cassette: Callable[[str], Any]) -> None:
    rows = [{"external_id": "u-1", "ltv": 1300.0, "health_score": 90},
            {"external_id": "u-2", "ltv": 95.5, "health_score": None}]
    with cassette("update") as cas:
        res = write_records(make(), "users", rows, operation="update")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_partial_failure(cassette: Callable[[str], Any]) -> None:
    rows = [{"email": "ada@example.com", "ltv": 1300.0}, {"email": None, "ltv": 95.5},
            {"email": "cy@example.com", "ltv": 10.0}]
    with cassette("partial_failure") as cas:
        res = write_records(make(), "users", rows, match_key="email")
    assert cas.all_played and res.pending == []
    (rej,) = res.rejected
    assert rej.index == 1 and not rej.retryable and "is required" in rej.reason


def test_rate_limit_then_success(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("rate_limit") as cas:
        res = write_records(dest, "users", [{"external_id": "u-1", "ltv": 1300.0}])
    assert cas.all_played and res.rejected == [] and res.pending == []
    assert dest.client.stats["throttled"] == 1


def test_auth_failure(cassette: Callable[[str], Any]) -> None:
    dest = make()
    with cassette("auth_failure") as cas:
        with pytest.raises(CheckFailed, match="HTTP 401"):
            dest.check()
        res = write_records(dest, "users", [{"external_id": "u-1", "ltv": 1300.0}])
    assert cas.all_played and res.pending == [0] and res.rejected == []
    assert "check the key" in str(res.error)


def test_events_append(cassette: Callable[[str], Any]) -> None:
    t0 = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
    rows = [{"event_id": "ev-1", "external_id": "u-1", "name": "feature_failed", "time": t0,
             "feature": "export", "error_code": 502},
            {"event_id": "ev-2", "external_id": "u-2", "name": "survey_answered",
             "time": t0 + timedelta(minutes=5), "feature": "nps", "error_code": None}]
    with cassette("events") as cas:
        res = write_records(make(app_id="app-123"), "events", rows, operation="append")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_mirror_delete(cassette: Callable[[str], Any]) -> None:
    with cassette("delete") as cas:
        res = write_records(make(), "users", [{"external_id": "u-1"}, {"external_id": "u-2"}],
                            operation="delete")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_erase_by_email_counts_unknown_users_as_erased(cassette: Callable[[str], Any]) -> None:
    """Braze answers ``deleted: 1`` for two addresses (one unknown): both acknowledged."""
    with cassette("erase") as cas:
        res = write_records(make(), "users", [{"email": "ada@example.com"},
                                              {"email": "gone@example.com"}],
                            operation="erase", match_key="email")
    assert cas.all_played and res.rejected == [] and res.pending == []

"""Meta Custom Audiences destination against vcrpy cassettes.

The cassettes in ``cassettes/`` were **built by hand from the vendor documentation**
(https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users/),
**not recorded live**;
each starts with the toolkit's marker line. They replay with ``record_mode="none"`` (no
network) and a matcher checks every request body against the documented one (the random
``session_id`` excepted).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conn.errors import CheckFailed
from conn.testing.harness import write_records
from conn.testing.http import assert_documented_cassette, assert_no_secrets

CASSETTES = Path(__file__).parent / "cassettes"
TOKEN = "EAAGm0PX4ZCpsBAtesttokenvalue"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_every_cassette_is_marked_as_built_from_documentation() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert files
    for f in files:
        assert_documented_cassette(f)
        assert_no_secrets(f, [TOKEN])


def test_add_users(meta_cassette, make_dest) -> None:
    rows = [{"email": sha("ada@example.com"), "phone": sha("16505551234")},
            {"email": sha("grace@example.com"), "phone": None}]
    dest = make_dest()
    with meta_cassette("meta_add") as cas:
        res = write_records(dest, "audience", rows)
    assert cas.all_played
    assert not res.rejected and not res.pending and res.error is None
    assert list(dest.session_log.values()) == [[1]]


def test_update_and_remove(meta_cassette, make_dest) -> None:
    dest = make_dest()
    with meta_cassette("meta_update") as cas:
        res = write_records(dest, "audience", [{"email": sha("grace@example.com"),
                                                "phone": sha("16505551234")}])
        assert not res.rejected and not res.pending
        res = write_records(dest, "audience", [{"email": sha("linus@example.com")}],
                            operation="delete", match_key="email")
    assert cas.all_played
    assert not res.rejected and not res.pending


def test_partial_failure(meta_cassette, make_dest) -> None:
    rows = [{"email": sha("ada@example.com")}, {"email": "Grace@Example.com"},
            {"email": sha("linus@example.com")}]
    with meta_cassette("meta_partial") as cas:
        res = write_records(make_dest(), "audience", rows)
    assert cas.all_played
    assert not res.pending
    by_row = {r.index: r for r in res.rejected}
    assert sorted(by_row) == [1, 2]
    assert "not a SHA-256 hex digest" in by_row[1].reason and "email" in by_row[1].reason
    assert "Grace" not in by_row[1].reason  # never echo personal data
    assert "invalid" in by_row[2].reason


def test_rate_limit_then_success(meta_cassette, make_dest) -> None:
    dest = make_dest()
    with meta_cassette("meta_rate_limit") as cas:
        res = write_records(dest, "audience", [{"email": sha("ada@example.com")}])
    assert cas.all_played
    assert not res.rejected and not res.pending
    assert dest.client.stats["retries"] == 1


def test_auth_failure(meta_cassette, make_dest) -> None:
    dest = make_dest()
    with meta_cassette("meta_auth_failure") as cas:
        with pytest.raises(CheckFailed, match="code 190"):
            dest.check()
        res = write_records(dest, "audience", [{"email": sha("ada@example.com")}])
    assert cas.all_played
    assert res.pending == [0] and not res.rejected
    assert "Invalid OAuth access token" in str(res.error) and TOKEN not in str(res.error)

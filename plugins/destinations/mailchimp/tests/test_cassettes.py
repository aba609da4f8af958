"""Mailchimp destination against vcrpy cassettes.

The cassettes in ``cassettes/`` were **built by hand from the vendor documentation**
(https://mailchimp.com/developer/marketing/api/lists/,
https://mailchimp.com/developer/marketing/api/list-members/,
https://mailchimp.com/developer/marketing/docs/errors/), **not recorded live**; each starts
with the toolkit's marker line (``conn.testing.http.DOC_CASSETTE_MARKER``). conn's
``cassette`` fixture replays them (no test reaches the network) and makes every request
body sent equal the documented one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conn.errors import CheckFailed
from conn.testing.harness import write_records
from conn.testing.http import assert_documented_cassette, assert_no_secrets

CASSETTES = Path(__file__).parent / "cassettes"
API_KEY = "0123456789abcdef0123456789abcdef-us6"


def test_every_cassette_is_marked_as_built_from_documentation() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert files
    for f in files:
        assert_documented_cassette(f)
        assert_no_secrets(f, [API_KEY])


def test_check(cassette, make_dest) -> None:
    with cassette("mc_check") as cas:
        make_dest().check()
    assert cas.all_played


def test_create(cassette, make_dest) -> None:
    rows = [{"email_address": "ada@example.com", "FNAME": "Ada", "LNAME": "Lovelace",
             "tags": "newsletter", "status": None},
            {"email_address": "grace@example.com", "FNAME": "Grace", "LNAME": None,
             "tags": None, "status": "pending"}]
    with cassette("mc_create") as cas:
        res = write_records(make_dest(), "members", rows)
    assert cas.all_played
    assert not res.rejected and not res.pending and res.error is None


def test_update_never_resubscribes(cassette, make_dest) -> None:
    """Existing members get a PUT without ``status`` (linus stays unsubscribed); a record
    that unsubscribes (ken) is the only status change sent for an existing member."""
    rows = [{"email_address": "linus@example.com", "FNAME": "Linus", "status": None,
             "tags": ["vip", "beta"]},
            {"email_address": "ken@example.com", "FNAME": "Ken", "status": "unsubscribed",
             "tags": None},
            {"email_address": "barbara@example.com", "FNAME": "Barbara", "status": None,
             "tags": None}]
    with cassette("mc_update") as cas:
        res = write_records(make_dest(), "members", rows)
    assert cas.all_played
    assert not res.rejected and not res.pending
    puts = [r for r in cas.requests if r.method == "PUT"]
    assert len(puts) == 2
    import json

    bodies = {json.loads(r.body)["email_address"]: json.loads(r.body) for r in puts}
    assert "status" not in bodies["linus@example.com"]
    assert bodies["ken@example.com"]["status"] == "unsubscribed"


def test_partial_failure(cassette, make_dest) -> None:
    rows = [{"email_address": "ada@example.com", "BIRTHDAY": None},
            {"email_address": "not-an-email@example", "BIRTHDAY": None},
            {"email_address": "linus@example.com", "BIRTHDAY": "13/45"},
            {"email_address": "nobody", "BIRTHDAY": None}]
    with cassette("mc_partial") as cas:
        res = write_records(make_dest(), "members", rows)
    assert cas.all_played
    assert not res.pending
    reasons = {r.index: r for r in res.rejected}
    assert sorted(reasons) == [1, 2, 3]
    assert "looks fake or invalid" in reasons[1].reason and "email_address" in reasons[1].reason
    assert "merge_fields.BIRTHDAY" in reasons[2].reason
    assert "not an e-mail address" in reasons[3].reason
    assert not any(r.retryable for r in res.rejected)


def test_rate_limit_then_success(cassette, make_dest) -> None:
    dest = make_dest()
    with cassette("mc_rate_limit") as cas:
        res = write_records(dest, "members", [{"email_address": "ada@example.com"}])
    assert cas.all_played
    assert not res.rejected and not res.pending
    assert dest.client.stats["throttled"] == 1 and dest.client.stats["retries"] == 1


def test_auth_failure(cassette, make_dest) -> None:
    dest = make_dest()
    with cassette("mc_auth_failure") as cas:
        with pytest.raises(CheckFailed, match="API Key Invalid"):
            dest.check()
        res = write_records(dest, "members", [{"email_address": "ada@example.com"}])
    assert cas.all_played
    assert res.pending == [0] and not res.rejected
    assert "401" in str(res.error) and API_KEY not in str(res.error)


def test_archive_for_mirror(cassette, make_dest) -> None:
    with cassette("mc_archive") as cas:
        res = write_records(make_dest(), "members",
                            [{"email_address": "ada@example.com"},
                             {"email_address": "grace@example.com"}], operation="delete")
    assert cas.all_played
    assert not res.rejected and not res.pending


def test_erase_deletes_permanently(cassette, make_dest) -> None:
    """Permanent delete per member; an address not in the audience (404) is erased."""
    with cassette("mc_erase") as cas:
        res = write_records(make_dest(), "members",
                            [{"email_address": "ada@example.com"},
                             {"email_address": "grace@example.com"}], operation="erase")
    assert cas.all_played
    assert not res.rejected and not res.pending

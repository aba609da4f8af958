"""Mailchimp destination: config, object schema, payload rules, dry-run redaction, and
the destination against the toolkit's fault server emulating the Mailchimp API.

The emulator (``conftest.FakeMailchimp``, a handler for
:class:`conn.testing.http.FaultServer`) implements the documented batch subscribe, member
PUT, tags and archive calls; the fault server answers 10% of requests with 429 and 5%
with 503 before they reach it. Every member must still be
created (or updated) exactly once, and nobody who unsubscribed may be re-subscribed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from importlib.metadata import entry_points
from typing import Any

import pytest
from conn.errors import ConfigError
from conn.testing.harness import make_request, write_records
from conn.testing.http import FaultServer
from conn_destination_mailchimp.destination import (
    MailchimpDestination,
    datacenter,
    subscriber_hash,
)

from .conftest import LIST, FakeMailchimp

KEY = "0123456789abcdef0123456789abcdef-us21"


def _dest(**cfg):
    return MailchimpDestination({"api_key": KEY, "list_id": "L1", **cfg}, instance="mc")


def test_entry_point_and_secret_config() -> None:
    eps = [e for e in entry_points(group="conn.destinations") if e.name == "mailchimp"]
    assert eps and eps[0].value == "conn_destination_mailchimp.plugin"
    assert MailchimpDestination.config_schema["properties"]["api_key"]["secret"] is True
    with pytest.raises(ConfigError):
        MailchimpDestination.validate_config({"api_key": "nodatacenter", "list_id": "x"})
    MailchimpDestination.validate_config({"api_key": KEY, "list_id": "x",
                                          "merge_fields": {"SCORE": "number"}})


def test_datacenter_and_subscriber_hash() -> None:
    assert datacenter(KEY) == "us21"
    assert _dest().base_url == "https://us21.api.mailchimp.com/3.0"
    want = hashlib.md5(b"urist.mcvankab@freddiesjokes.com").hexdigest()
    assert subscriber_hash("  Urist.McVankab@FreddiesJokes.com ") == want
    assert want == "62eeb292278cc15f5817cb78f7790b08"  # Mailchimp's own example


def test_object_declaration() -> None:
    obj = _dest(merge_fields={"SCORE": "number"}, concurrency=3).object("members")
    assert obj.identifiers == ("email_address",)
    assert obj.personal["email_address"] == "email" and obj.personal["PHONE"] == "phone"
    assert obj.properties["SCORE"] == {"type": "number", "description": "Merge field SCORE."}
    caps = obj.capabilities
    assert caps.batch_size == 500 and caps.concurrency == 3 and caps.supports_delete
    # total connections never exceed Mailchimp's 10
    assert caps.concurrency * _dest(concurrency=3).member_workers <= 10


def test_status_rules() -> None:
    d = _dest(status_if_new="pending")
    rec = {"email_address": "a@example.com", "status": None, "FNAME": "A"}
    assert d.member(rec, new=True)["status"] == "pending"
    upd = d.member(rec, new=False)
    assert "status" not in upd and upd["status_if_new"] == "pending"
    sub = d.member({**rec, "status": "subscribed"}, new=False)
    assert "status" not in sub  # never (re-)subscribe an existing member
    uns = d.member({**rec, "status": "unsubscribed"}, new=False)
    assert uns["status"] == "unsubscribed"
    assert "status" not in _dest(apply_unsubscribes=False).member(
        {**rec, "status": "unsubscribed"}, new=False)


def test_dry_run_describes_exact_requests_without_secrets() -> None:
    d = _dest()
    req = make_request(d, "members", [{"email_address": "a@example.com", "FNAME": "A"}],
                       "delete", dry_run=True)
    out = d.describe_requests(req)
    assert out[0]["method"] == "DELETE"
    assert out[0]["path"] == f"/3.0/lists/L1/members/{subscriber_hash('a@example.com')}"
    text = json.dumps(out)
    assert KEY not in text and "Basic ***" in text
    d.close()


# --- against a loopback Mailchimp with injected faults ------------------------------


def _served(srv: FaultServer, **config: Any) -> Any:
    cfg = {"api_key": "0123456789abcdef-us6", "list_id": LIST,
           "base_url": srv.url + "/3.0", "concurrency": 2, "max_attempts": 12, **config}
    MailchimpDestination.validate_config(cfg)
    d = MailchimpDestination(cfg, instance="mc")
    d.client_options = {"seed": 7, "sleep": lambda s: time.sleep(min(s, 0.02))}
    return d


def test_exactly_once_under_throttling_and_errors(fault_server: FaultServer) -> None:
    fake = FakeMailchimp()
    fault_server.configure(handler=fake, throttle_rate=0.10, error_rate=0.05,
                           retry_after=0.01, seed=3)
    # Existing members: some unsubscribed (must stay so), some subscribed.
    existing = [f"old{i}@example.com" for i in range(300)]
    for i, e in enumerate(existing):
        fake.seed(e, "unsubscribed" if i % 3 == 0 else "subscribed")
    new = [f"new{i}@example.com" for i in range(1200)]
    rows = [{"email_address": e, "FNAME": f"N{i}", "status": None}
            for i, e in enumerate(new + existing)]
    with _served(fault_server) as dest:
        res = write_records(dest, "members", rows)
    assert not res.rejected and not res.pending, (res.rejected[:3], res.error)
    fault_server.assert_exactly_once(new)
    assert all(fake.creates[e] == 1 for e in new)
    assert sorted(fake.puts) == sorted(existing) and set(fake.puts.values()) == {1}
    for i, e in enumerate(existing):
        want = "unsubscribed" if i % 3 == 0 else "subscribed"
        assert fake.members[fake.h(e)]["status"] == want
        assert fake.members[fake.h(e)]["merge_fields"]["FNAME"]
    faults = Counter(r.fault for r in fault_server.requests)
    assert faults["throttle"] > 0 and faults["error"] > 0


def test_archive_under_faults(fault_server: FaultServer) -> None:
    fake = FakeMailchimp()
    emails = [f"gone{i}@example.com" for i in range(200)]
    for e in emails:
        fake.seed(e, "subscribed")
    fault_server.configure(handler=fake, throttle_rate=0.10, error_rate=0.05,
                           retry_after=0.01, seed=5)
    with _served(fault_server) as dest:
        res = write_records(dest, "members", [{"email_address": e} for e in emails],
                            operation="delete")
    assert not res.rejected and not res.pending
    assert not fake.members and set(fake.archived.values()) == {1}


def test_erase_deletes_permanently_under_faults(fault_server: FaultServer) -> None:
    """``erase`` sends the permanent delete whatever ``delete_mode`` says; 429/5xx are
    retried; an address not in the audience (404) is acknowledged as erased; a 400 for
    one member rejects that member with Mailchimp's detail."""
    fake = FakeMailchimp()
    emails = [f"erase{i}@example.com" for i in range(60)]
    for e in emails:
        fake.seed(e, "subscribed")
    fake.seed("locked@example.com", "locked")
    fault_server.configure(handler=fake, throttle_rate=0.10, error_rate=0.05,
                           retry_after=0.01, seed=9)
    rows = [{"email_address": e} for e in [*emails, "never@example.com", "locked@example.com"]]
    with _served(fault_server, delete_mode="archive") as dest:
        assert "delete-permanent" in dest.object("members").capabilities.erasure
        res = write_records(dest, "members", rows, operation="erase")
    assert not res.pending and res.error is None
    assert [r.index for r in res.rejected] == [61]
    assert "cannot be deleted now" in res.rejected[0].reason
    assert sorted(fake.erased) == sorted(emails) and set(fake.erased.values()) == {1}
    assert not fake.archived
    faults = Counter(r.fault for r in fault_server.requests)
    assert faults["throttle"] > 0 and faults["error"] > 0


def test_audience_tag_added_on_write_and_removed_on_delete(
        fault_server: FaultServer) -> None:
    """With ``tag``: new members are created with it (batch call), existing ones get it
    with ``POST .../tags`` (active); a delete removes only the tag (``inactive``) and
    keeps the member; a member not in the audience (404) counts as untagged. Under 429
    and 503 faults every member ends with exactly the tags of the synced set."""
    fake = FakeMailchimp()
    fake.seed("old@example.com", "unsubscribed")
    fault_server.configure(handler=fake, throttle_rate=0.10, error_rate=0.05,
                           retry_after=0.01, seed=11)
    emails = [f"m{i}@example.com" for i in range(40)] + ["old@example.com"]
    with _served(fault_server, tag="at_risk") as dest:
        res = write_records(dest, "members", [{"email_address": e, "tags": "vip"}
                                              for e in emails])
        assert not res.rejected and not res.pending, res.error
        assert all(fake.members[fake.h(e)]["tags"] == {"vip", "at_risk"} for e in emails)
        leaving = [*emails[::3], "never@example.com"]
        res = write_records(dest, "members", [{"email_address": e} for e in leaving],
                            operation="delete")
        assert not res.rejected and not res.pending, res.error
    for e in emails:
        want = {"vip"} if e in leaving else {"vip", "at_risk"}
        assert fake.members[fake.h(e)]["tags"] == want
    assert not fake.archived and fake.members[fake.h("old@example.com")]["status"] == \
        "unsubscribed"
    untag = [r for r in fault_server.requests if r.path.endswith("/tags") and
             r.json["tags"][0]["status"] == "inactive" and not r.fault]
    assert {t["name"] for r in untag for t in r.json["tags"]} == {"at_risk"}


def test_audience_tag_dry_run_and_identity() -> None:
    d = _dest(tag="at_risk")
    out = d.describe_requests(make_request(d, "members", [{"email_address": "a@x.io"}],
                                           "delete", dry_run=True))
    assert out[0]["method"] == "POST" and out[0]["path"].endswith("/tags")
    assert out[0]["json"] == {"tags": [{"name": "at_risk", "status": "inactive"}]}
    assert d.target_identity()["tag"] == "at_risk" and "tag" not in _dest().target_identity()

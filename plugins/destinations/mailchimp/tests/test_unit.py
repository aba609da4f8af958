"""Mailchimp destination: config, object schema, payload rules, dry-run redaction."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import entry_points

import pytest
from conn.errors import ConfigError
from conn.runtime import delivery
from conn_destination_mailchimp.destination import (
    MailchimpDestination,
    datacenter,
    subscriber_hash,
)

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
    import pyarrow as pa

    d = _dest()
    obj = d.object("members")
    batch = pa.RecordBatch.from_pylist([{"email_address": "a@example.com", "FNAME": "A"}])
    req = delivery.delete_request("s", obj, batch.select(["email_address"]),
                                  "email_address", True)
    out = d.describe_requests(req)
    assert out[0]["method"] == "DELETE"
    assert out[0]["path"] == f"/3.0/lists/L1/members/{subscriber_hash('a@example.com')}"
    text = json.dumps(out)
    assert KEY not in text and "Basic ***" in text
    d.close()

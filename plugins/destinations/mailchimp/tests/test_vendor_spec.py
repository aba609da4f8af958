"""Every request the plugin sends, checked against Mailchimp's client and documents.

Requests are made through conn's write path (``write_records``) to a loopback audience
(:class:`.conftest.FakeMailchimp`) and checked with :mod:`.vendor_spec`: the official
``mailchimp-marketing`` client must build the same operation (method, path, query
parameters, body, Basic auth), and bodies must follow the documented member rules, e.g.
merge-field values are strings, numbers or addresses, never booleans. The hand-written
cassettes pass the same checks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from conn.testing.harness import write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply

from .conftest import LIST, FakeMailchimp
from .vendor_spec import DOCUMENTED, official_request, request_errors

CASSETTES = Path(__file__).parent / "cassettes"


def _url(server: FaultServer, r: RecordedRequest) -> str:
    query = f"?{urlencode({k: v[0] for k, v in r.query.items()})}" if r.query else ""
    return f"{server.url}{r.path}{query}"


def test_boolean_merge_fields_are_sent_as_text(make_dest, fault_server: FaultServer) -> None:
    fake = FakeMailchimp()
    fault_server.configure(handler=fake)
    dest = make_dest(list_id=LIST, base_url=fault_server.url + "/3.0",
                     merge_fields={"VIP": "boolean", "SCORE": "number"})
    fake.seed("old@example.com", "subscribed")
    res = write_records(dest, "members", [
        {"email_address": "new@example.com", "VIP": True, "SCORE": 4.5},
        {"email_address": "old@example.com", "VIP": False, "SCORE": 1}])
    assert not res.rejected and not res.pending, res.error
    sent = [m["merge_fields"] for r in fault_server.requests if r.method == "POST"
            for m in r.json["members"]]
    sent += [r.json["merge_fields"] for r in fault_server.requests if r.method == "PUT"]
    assert {"VIP": "true", "SCORE": 4.5} in sent and {"VIP": "false", "SCORE": 1} in sent


def test_the_official_client_knows_each_operation() -> None:
    method, path, query, body, basic = official_request(
        "POST", "/3.0/lists/L1", {"skip_merge_validation": "true"}, {"members": []})
    assert (method, path, query, body, basic) == (
        "POST", "/3.0/lists/L1", {"skip_merge_validation"}, {"members": []}, True)
    with pytest.raises(LookupError):
        official_request("PATCH", "/3.0/lists/L1/members/" + "0" * 32, {}, {})


@pytest.mark.parametrize(("method", "path", "body", "wanted"), [
    ("POST", "/3.0/lists/L1", '{"members": [{"email_address": "a@x.io", "status": '
     '"subscribed", "merge_fields": {"VIP": true}}], "update_existing": false}', "no booleans"),
    ("POST", "/3.0/lists/L1", '{"members": [{"email_address": "a@x.io", "status": "gone"}],'
     ' "update_existing": false}', "status"),
    ("PUT", "/3.0/lists/L1/members/" + "0" * 32, '{"email_address": "a@x.io"}',
     "status_if_new"),
    ("POST", "/3.0/lists/L1/members/" + "0" * 32 + "/tags", '{"tags": ["vip"]}', "tags"),
    ("GET", "/3.0/lists/L1?nonsense=1", None, "unexpected keyword argument 'nonsense'"),
    ("PATCH", "/3.0/lists/L1", "{}", "no such operation"),
])
def test_the_checks_catch_departures(method: str, path: str, body: str | None,
                                     wanted: str) -> None:
    errors = request_errors(method, "https://us6.api.mailchimp.com" + path, {}, body)
    assert any(wanted in e for e in errors), errors


def test_every_request_of_the_write_path_follows_mailchimp(make_dest,
                                                           fault_server: FaultServer) -> None:
    fake = FakeMailchimp()

    def audience(r: RecordedRequest, s: FaultServer) -> Reply:
        if r.method == "GET":
            return Reply(200, json={"health_status": "ok", "id": LIST})
        if r.path.endswith("/actions/delete-permanent"):
            return Reply(204)
        return fake(r, s)

    fault_server.configure(handler=audience)
    dest = make_dest(list_id=LIST, base_url=fault_server.url + "/3.0",
                     merge_fields={"VIP": "boolean", "SCORE": "number", "SINCE": "string"},
                     skip_merge_validation=True)
    for e in ("old1@example.com", "old2@example.com"):
        fake.seed(e, "unsubscribed")
    rows = [{"email_address": f"{n}@example.com", "FNAME": "Zoë", "VIP": i % 2 == 0,
             "SCORE": i * 1.5, "SINCE": dt.date(2024, 1, i + 1), "vip": True,
             "tags": ["a", "b"], "status": "unsubscribed" if i == 1 else None}
            for i, n in enumerate(["new1", "old1", "new2", "old2"])]
    dest.check()
    res = write_records(dest, "members", rows)
    assert not res.rejected and not res.pending, res.error
    assert not write_records(dest, "members", [{"email_address": "new1@example.com"}],
                             operation="delete").rejected
    permanent = make_dest(list_id=LIST, base_url=fault_server.url + "/3.0",
                          delete_mode="permanent")
    assert not write_records(permanent, "members", [{"email_address": "new2@example.com"}],
                             operation="delete").rejected
    assert not write_records(dest, "members", [{"email_address": "old1@example.com"}],
                             operation="erase").rejected
    tagged = make_dest(list_id=LIST, base_url=fault_server.url + "/3.0", tag="at_risk")
    assert not write_records(tagged, "members", [{"email_address": "new3@example.com"},
                                                 {"email_address": "old2@example.com"}]).rejected
    assert not write_records(tagged, "members", [{"email_address": "old2@example.com"}],
                             operation="delete").rejected
    problems = [e for r in fault_server.requests
                for e in request_errors(r.method, _url(fault_server, r), r.headers, r.body)]
    assert problems == []
    assert {r.method for r in fault_server.requests} == {"GET", "POST", "PUT", "DELETE"}


def test_every_cassette_request_follows_mailchimp() -> None:
    problems, checked = [], 0
    for path in sorted(CASSETTES.glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            req = interaction["request"]
            headers = {k: v[0] for k, v in (req.get("headers") or {}).items()}
            problems += [f"{path.name}: {e}" for e in request_errors(
                req["method"], req["uri"], headers, req.get("body"))]
            checked += 1
    assert checked >= 12 and problems == []
    assert all(url.startswith("https://mailchimp.com/") for _, url in DOCUMENTED.values())

"""Mailchimp destination against the toolkit's fault server emulating the Mailchimp API.

The emulator (a handler for :class:`conn.testing.http.FaultServer`) implements the
documented batch subscribe, member PUT, tags and archive calls; the fault server answers
10% of requests with 429 and 5% with 503 before they reach it. Every member must still be
created (or updated) exactly once, and nobody who unsubscribed may be re-subscribed.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from typing import Any

from conn.testing.harness import write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply

LIST = "L1"


class FakeMailchimp:
    """A tiny Mailchimp audience: members by subscriber hash."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, Any]] = {}
        self.creates: Counter[str] = Counter()
        self.puts: Counter[str] = Counter()
        self.archived: Counter[str] = Counter()

    def seed(self, email: str, status: str) -> None:
        self.members[self.h(email)] = {"email_address": email, "status": status,
                                       "merge_fields": {}}

    @staticmethod
    def h(email: str) -> str:
        return hashlib.md5(email.strip().lower().encode()).hexdigest()

    def __call__(self, req: RecordedRequest, server: FaultServer) -> Reply:
        parts = req.path.strip("/").split("/")  # 3.0 lists L1 [members HASH [tags]]
        if parts[:3] != ["3.0", "lists", LIST]:
            return Reply(404, json={"title": "Resource Not Found", "status": 404})
        if len(parts) == 3 and req.method == "POST":
            return self.batch(req.json, server)
        h = parts[4]
        if len(parts) == 5 and req.method == "PUT":
            body = req.json
            assert self.h(body["email_address"]) == h
            m = self.members.get(h)
            if m is None:
                m = self.members[h] = {"email_address": body["email_address"],
                                       "status": body["status_if_new"], "merge_fields": {}}
            elif "status" in body:
                m["status"] = body["status"]
            m["merge_fields"].update(body.get("merge_fields") or {})
            self.puts[body["email_address"]] += 1
            return Reply(200, json={"id": h, **m})
        if len(parts) == 6 and parts[5] == "tags" and req.method == "POST":
            self.members[h].setdefault("tags", set()).update(
                t["name"] for t in req.json["tags"])
            return Reply(204)
        if len(parts) == 5 and req.method == "DELETE":
            if h not in self.members:
                return Reply(404, json={"title": "Resource Not Found", "status": 404})
            m = self.members.pop(h)
            server.store.pop(m["email_address"], None)
            self.archived[m["email_address"]] += 1
            return Reply(204)
        return Reply(405, json={"title": "Method Not Allowed", "status": 405})

    def batch(self, body: dict[str, Any], server: FaultServer) -> Reply:
        assert body["update_existing"] is False
        new, errors = [], []
        for m in body["members"]:
            email = m["email_address"]
            h = self.h(email)
            if h in self.members:
                errors.append({"email_address": email, "error_code": "ERROR_CONTACT_EXISTS",
                               "error": f"{email} is already a list member."})
                continue
            if "invalid" in email:
                errors.append({"email_address": email, "error_code": "ERROR_GENERIC",
                               "error": f"{email} looks fake or invalid"})
                continue
            self.members[h] = {"email_address": email, "status": m["status"],
                               "merge_fields": dict(m.get("merge_fields") or {})}
            self.creates[email] += 1
            server.store[email] = m
            server.arrivals[email] += 1
            new.append({"id": h, **m})
        return Reply(200, json={"new_members": new, "updated_members": [], "errors": errors,
                                "total_created": len(new), "total_updated": 0,
                                "error_count": len(errors)})


def _dest(srv: FaultServer, **config: Any) -> Any:
    from conn_destination_mailchimp.destination import MailchimpDestination

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
    with _dest(fault_server) as dest:
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
    with _dest(fault_server) as dest:
        res = write_records(dest, "members", [{"email_address": e} for e in emails],
                            operation="delete")
    assert not res.rejected and not res.pending
    assert not fake.members and set(fake.archived.values()) == {1}

"""Fixtures shared by the mailchimp tests, and the loopback Mailchimp audience the fault
and vendor-rule tests write to."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conn.testing.http import FaultServer, RecordedRequest, Reply

API_KEY = "0123456789abcdef0123456789abcdef-us6"
LIST_ID = "a1b2c3d4e5"


@pytest.fixture
def make_dest() -> Iterator[Callable[..., Any]]:
    """Build a destination whose retries do not really sleep."""
    from conn_destination_mailchimp.destination import MailchimpDestination

    made = []

    def factory(**config: Any) -> MailchimpDestination:
        cfg = {"api_key": API_KEY, "list_id": LIST_ID, "concurrency": 1, **config}
        MailchimpDestination.validate_config(cfg)
        d = MailchimpDestination(cfg, instance="mc")
        d.client_options = {"sleep": lambda s: None, "seed": 1}
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close()


#: The audience the loopback Mailchimp serves.
LIST = "L1"


class FakeMailchimp:
    """A tiny Mailchimp audience: members by subscriber hash."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, Any]] = {}
        self.creates: Counter[str] = Counter()
        self.puts: Counter[str] = Counter()
        self.archived: Counter[str] = Counter()
        #: Permanently deleted addresses (documented: they cannot be re-imported).
        self.erased: Counter[str] = Counter()

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
            # Documented: "active" adds the tag, "inactive" removes it; 204 No Content.
            if h not in self.members:
                return Reply(404, json={"title": "Resource Not Found", "status": 404})
            tags = self.members[h].setdefault("tags", set())
            for t in req.json["tags"]:
                (tags.add if t["status"] == "active" else tags.discard)(t["name"])
            return Reply(204)
        if len(parts) == 5 and req.method == "DELETE":
            if h not in self.members:
                return Reply(404, json={"title": "Resource Not Found", "status": 404})
            m = self.members.pop(h)
            server.store.pop(m["email_address"], None)
            self.archived[m["email_address"]] += 1
            return Reply(204)
        if parts[5:] == ["actions", "delete-permanent"] and req.method == "POST":
            if h not in self.members:
                return Reply(404, json={"title": "Resource Not Found", "status": 404})
            if self.members[h].get("status") == "locked":
                return Reply(400, json={"title": "Invalid Resource", "status": 400,
                                        "detail": "This member cannot be deleted now."})
            m = self.members.pop(h)
            server.store.pop(m["email_address"], None)
            self.erased[m["email_address"]] += 1
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
                               "merge_fields": dict(m.get("merge_fields") or {}),
                               "tags": set(m.get("tags") or [])}
            self.creates[email] += 1
            server.store[email] = m
            server.arrivals[email] += 1
            new.append({"id": h, **m})
        return Reply(200, json={"new_members": new, "updated_members": [], "errors": errors,
                                "total_created": len(new), "total_updated": 0,
                                "error_count": len(errors)})


@pytest.fixture(autouse=True)
def _close_clients(close_http_clients: None) -> None:
    """Every test closes the HTTP clients its destinations opened (no stray sockets)."""

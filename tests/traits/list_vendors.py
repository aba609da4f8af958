"""A loopback of three list-style vendors on one conn fault server, following their
documented request and answer shapes (built from the documentation, not recorded):

- Mailchimp (https://mailchimp.com/developer/marketing/api/list-members/ and
  .../list-member-tags/): batch subscribe ``POST /3.0/lists/{list}`` with
  ``{"members", "update_existing": false}`` (existing addresses come back in ``errors``
  as already members), ``PUT .../members/{md5}``, ``POST .../members/{md5}/tags`` with
  ``{"tags": [{"name", "status": "active"|"inactive"}]}`` answered 204, archive
  ``DELETE .../members/{md5}``.
- Meta Custom Audiences (https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences):
  ``POST`` (form body) and ``DELETE`` (query string) ``/v25.0/{audience}/users`` with
  ``payload = {"schema": ["EMAIL"], "data": [[sha256], ...]}`` and ``session``.
- HubSpot (https://developers.hubspot.com/docs/api-reference/legacy/crm/lists/memberships/add-to-list):
  ``POST /crm/v3/objects/contacts/batch/read`` by e-mail, ``PUT
  /crm/v3/lists/{list}/memberships/add|remove`` with a JSON array of record ids.

Every request is also classified as adding, removing or reading people, so a test can
check who appeared in which kind of request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from conn.testing.http import FaultServer, RecordedRequest, Reply

MC_LIST, META_AUDIENCE, HS_LIST = "L1", "111", "42"


def md5(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def sha256(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


@dataclass
class Vendors:
    """What each vendor holds, and who appeared in which kind of request."""

    people: list[str]
    mc_members: dict[str, dict] = field(default_factory=dict)   # md5 -> member
    meta_users: set[str] = field(default_factory=set)           # sha256 hashes
    hs_list: set[str] = field(default_factory=set)              # record ids
    seen: dict[str, set[str]] = field(default_factory=lambda: {
        "add": set(), "remove": set(), "read": set()})
    archived: int = 0

    def __post_init__(self) -> None:
        self.hs_ids = {e: str(5000 + i) for i, e in enumerate(self.people)}
        self.who = {k: e for e in self.people
                    for k in (e, md5(e), sha256(e), self.hs_ids[e])}

    # -- what each vendor holds, as e-mail addresses --

    def mailchimp_tagged(self, tag: str) -> set[str]:
        return {m["email_address"] for m in self.mc_members.values() if tag in m["tags"]}

    def meta(self) -> set[str]:
        return {self.who[h] for h in self.meta_users}

    def hubspot(self) -> set[str]:
        return {self.who[i] for i in self.hs_list}

    def _saw(self, kind: str, keys: Iterable[str]) -> None:
        self.seen[kind] |= {self.who.get(k, k) for k in keys}

    # -- Mailchimp --

    def mc_batch(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        body = req.json
        assert body["update_existing"] is False
        self._saw("add", [m["email_address"] for m in body["members"]])
        errors = []
        for m in body["members"]:
            h = md5(m["email_address"])
            if h in self.mc_members:
                errors.append({"email_address": m["email_address"],
                               "error_code": "ERROR_CONTACT_EXISTS",
                               "error": f"{m['email_address']} is already a list member."})
                continue
            self.mc_members[h] = {"email_address": m["email_address"], "status": m["status"],
                                  "tags": set(m.get("tags") or [])}
        return Reply(200, json={"new_members": [], "updated_members": [], "errors": errors,
                                "total_created": len(body["members"]) - len(errors),
                                "total_updated": 0, "error_count": len(errors)})

    def mc_put(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        h = req.params["h"]
        self._saw("add", [h])
        m = self.mc_members.setdefault(h, {"email_address": req.json["email_address"],
                                           "status": req.json["status_if_new"], "tags": set()})
        return Reply(200, json={"id": h, "email_address": m["email_address"],
                                "status": m["status"]})

    def mc_tags(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        h = req.params["h"]
        tags = req.json["tags"]
        self._saw("add" if all(t["status"] == "active" for t in tags) else "remove", [h])
        if h not in self.mc_members:
            return Reply(404, json={"title": "Resource Not Found", "status": 404})
        held = self.mc_members[h]["tags"]
        for t in tags:
            (held.add if t["status"] == "active" else held.discard)(t["name"])
        return Reply(204)

    def mc_archive(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        self._saw("remove", [req.params["h"]])
        self.archived += 1
        self.mc_members.pop(req.params["h"], None)
        return Reply(204)

    # -- Meta --

    def meta_users_call(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        params = {k: v[0] for k, v in req.query.items()}
        if req.body:
            params.update(parse_qsl(req.body.decode(), keep_blank_values=True))
        payload = json.loads(params["payload"])
        assert payload["schema"] == ["EMAIL"]
        hashes = [row[0] for row in payload["data"]]
        assert all(len(h) == 64 for h in hashes)
        removing = req.method == "DELETE"
        self._saw("remove" if removing else "add", hashes)
        (self.meta_users.difference_update if removing else self.meta_users.update)(hashes)
        session = json.loads(params["session"])
        return Reply(200, json={"audience_id": META_AUDIENCE,
                                "session_id": str(session["session_id"]),
                                "num_received": len(hashes), "num_invalid_entries": 0,
                                "invalid_entry_samples": {}})

    # -- HubSpot --

    def hs_read(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        inputs = [i["id"] for i in req.json["inputs"]]
        self._saw("read", inputs)
        results = [{"id": self.hs_ids[e.lower()], "properties": {"email": e.lower()}}
                   for e in inputs if e.lower() in self.hs_ids]
        return Reply(200, json={"status": "COMPLETE", "results": results})

    def hs_membership(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        assert req.params["list"] == HS_LIST
        ids = req.json
        adding = req.params["action"] == "add"
        self._saw("add" if adding else "remove", ids)
        (self.hs_list.update if adding else self.hs_list.difference_update)(ids)
        return Reply(200, json={"recordIdsMissing": [], "recordIdsRemoved": [] if adding
                                else ids, "recordsIdsAdded": ids if adding else []})

    def serve(self, srv: FaultServer) -> None:
        """Route every vendor call on ``srv``."""
        base = f"/3.0/lists/{MC_LIST}"
        srv.route("POST", base, self.mc_batch)
        srv.route("PUT", base + "/members/{h}", self.mc_put)
        srv.route("POST", base + "/members/{h}/tags", self.mc_tags)
        srv.route("DELETE", base + "/members/{h}", self.mc_archive)
        srv.route("POST", f"/v25.0/{META_AUDIENCE}/users", self.meta_users_call)
        srv.route("DELETE", f"/v25.0/{META_AUDIENCE}/users", self.meta_users_call)
        srv.route("POST", "/crm/v3/objects/contacts/batch/read", self.hs_read)
        srv.route("PUT", "/crm/v3/lists/{list}/memberships/{action}", self.hs_membership)

"""Static contact lists as objects (``lists:``, conn_destination_hubspot.lists) against a
loopback HubSpot built from the documented shapes: batch read of contacts by e-mail,
``PUT /crm/v3/lists/{listId}/memberships/add|remove`` with a JSON array of record ids,
answered ``200 {"recordIdsMissing", "recordIdsRemoved", "recordsIdsAdded"}``
(https://developers.hubspot.com/docs/api-reference/legacy/crm/lists/memberships/add-to-list)."""

from __future__ import annotations

from typing import Any

import pytest
from conn.errors import ConfigError
from conn.testing.harness import make_request, write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply

from .conftest import make

LIST_ID = "42"


class ListsEmulator:
    """Contacts by e-mail and one MANUAL list, as HubSpot documents them."""

    def __init__(self, srv: FaultServer, contacts: list[str]) -> None:
        self.ids = {e: str(1000 + i) for i, e in enumerate(contacts)}
        self.members: set[str] = set()
        srv.route("POST", "/crm/v3/objects/contacts/batch/read", self.read)
        srv.route("PUT", "/crm/v3/lists/{list}/memberships/{action}", self.membership)

    def read(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        body = req.json
        assert body["idProperty"] == "email" and body["propertiesWithHistory"] == []
        results = [{"id": self.ids[i["id"].lower()], "properties": {"email": i["id"].lower()},
                    "archived": False} for i in body["inputs"] if i["id"].lower() in self.ids]
        errors = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                   "message": "Could not get some CONTACT objects, they may be deleted or "
                              "not exist.", "context": {"ids": [i["id"]]}}
                  for i in body["inputs"] if i["id"].lower() not in self.ids]
        return Reply(207 if errors else 200, json={"status": "COMPLETE", "results": results,
                                                   **({"errors": errors} if errors else {})})

    def membership(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        if req.params["list"] != LIST_ID:
            return Reply(404, json={"status": "error", "category": "OBJECT_NOT_FOUND",
                                    "message": f"List {req.params['list']} does not exist."})
        ids = req.json
        assert isinstance(ids, list) and all(isinstance(x, str) for x in ids)
        known = set(self.ids.values())
        missing = [x for x in ids if x not in known]
        done = [x for x in ids if x in known]
        if req.params["action"] == "add":
            added = [x for x in done if x not in self.members]
            self.members |= set(done)
            return Reply(200, json={"recordIdsMissing": missing, "recordIdsRemoved": [],
                                    "recordsIdsAdded": added})
        removed = [x for x in done if x in self.members]
        self.members -= set(done)
        return Reply(200, json={"recordIdsMissing": missing, "recordIdsRemoved": removed,
                                "recordsIdsAdded": []})


def dest(srv: FaultServer, **config: Any) -> Any:
    return make(base_url=srv.url, lists={"at_risk": LIST_ID}, **config)


def test_list_objects_declared_and_names_checked() -> None:
    obj = make(lists={"at_risk": LIST_ID}).object("at_risk")
    assert obj.identifiers == ("email", "hs_object_id") and obj.personal == {"email": "email"}
    assert obj.capabilities.operations() == {"upsert", "delete"}
    with pytest.raises(ConfigError, match="clash"):
        make(lists={"contacts": "1"}).objects()


def test_join_and_leave_under_faults(fault_server: FaultServer) -> None:
    emails = [f"p{i}@example.com" for i in range(30)]
    emu = ListsEmulator(fault_server, emails)
    fault_server.configure(throttle_rate=0.1, error_rate=0.05, retry_after=0.01, seed=2)
    d = dest(fault_server)
    rows = [{"email": e.upper() if i % 4 == 0 else e, "plan": "pro"}
            for i, e in enumerate(emails)] + [{"email": "nobody@example.com", "plan": "x"}]
    res = write_records(d, "at_risk", rows, match_key="email")
    assert res.pending == [] and [r.index for r in res.rejected] == [30]
    assert res.rejected[0].retryable and "no HubSpot contact" in res.rejected[0].reason
    assert emu.members == {emu.ids[e] for e in emails}
    leaving = [{"email": e} for e in emails[::2]] + [{"email": "nobody@example.com"}]
    res = write_records(d, "at_risk", leaving, operation="delete", match_key="email")
    assert res.pending == [] and res.rejected == []
    assert emu.members == {emu.ids[e] for e in emails[1::2]}
    # Replays are harmless: the same calls again change nothing.
    res = write_records(d, "at_risk", leaving, operation="delete", match_key="email")
    assert res.rejected == [] and emu.members == {emu.ids[e] for e in emails[1::2]}


def test_unknown_list_stops_the_run_pending(fault_server: FaultServer) -> None:
    ListsEmulator(fault_server, ["a@example.com"])
    d = make(base_url=fault_server.url, lists={"at_risk": "999"})
    res = write_records(d, "at_risk", [{"email": "a@example.com"}], match_key="email")
    assert res.pending == [0] and "999" in str(res.error) and "MANUAL" in str(res.error)


def test_dry_run_describes_read_and_membership() -> None:
    d = make(lists={"at_risk": LIST_ID})
    out = d.describe_requests(make_request(d, "at_risk", [{"email": "a@example.com"}],
                                           "delete", dry_run=True, match_key="email"))
    assert [(o["method"], o["path"]) for o in out] == [
        ("POST", "/crm/v3/objects/contacts/batch/read"),
        ("PUT", f"/crm/v3/lists/{LIST_ID}/memberships/remove")]
    assert out[1]["json"] == ["<hs_object_id of email=a@example.com>"]

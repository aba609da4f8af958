"""A destination fails the erasure: it stays pending in conn's state, is retried by the
sync's next run and by ``conn forget --retry``, and the receipt lists every attempt.
Until the destination confirms, conn keeps the match value it needs; afterwards no
project file holds it."""

from __future__ import annotations

import json

import pytest
from conn.testing.http import Reply

from tests.privacy.conftest import clear_hits, person

pytestmark = pytest.mark.usefixtures("real_registry")


def _hook_targets(receipt: dict) -> list[dict]:
    return [t for t in receipt["targets"] if t["destination"] == "hook"]


def _forget_with_failing_hook(project, server, capsys, monkeypatch, who: int) -> dict:
    project.sync_all(capsys, monkeypatch)
    server.configure(error_rate=1.0, error_status=503)
    code, out = project.conn(capsys, monkeypatch, "forget", person(who)["email"], "--json")
    assert code == 1, out  # pending, as a sync with pending rows
    receipt = json.loads(out)
    assert receipt["status"] == "pending"
    for t in _hook_targets(receipt):
        assert t["outcome"] == "pending"
        assert len(t["attempts"]) == 1
        assert "503" in t["attempts"][0]["error"]
    files = [t for t in receipt["targets"] if t["destination"] == "out"]
    assert files and all(t["outcome"] == "done" for t in files)
    return receipt


@pytest.mark.slow
def test_a_failed_erasure_is_retried_by_the_next_sync(project, server, capsys, monkeypatch):
    email = person(3)["email"].lower()
    receipt = _forget_with_failing_hook(project, server, capsys, monkeypatch, 3)
    assert person(3)["email"] in server.store
    # Still failing: the sync goes on, the erasure stays pending, one more attempt.
    reports = project.sync_all(capsys, monkeypatch)
    hook = {r["name"]: r for r in reports if r["destination"] == "hook"}
    assert hook["people_hook"]["erasures"] == {"retried": 1, "erased": 0, "pending": 1}
    server.configure(error_rate=0.0)
    reports = project.sync_all(capsys, monkeypatch)
    hook = {r["name"]: r for r in reports if r["destination"] == "hook"}
    assert hook["people_hook"]["erasures"] == {"retried": 1, "erased": 1, "pending": 0}
    assert hook["leads_hook"]["erasures"] == {"retried": 1, "erased": 1, "pending": 0}
    assert person(3)["email"] not in server.store
    code, out = project.conn(capsys, monkeypatch, "forget", "--status",
                             receipt["receipt_id"], "--json")
    assert code == 0, out
    status = json.loads(out)
    assert status["chain"]["intact"]
    [done] = status["receipts"]
    assert done["status"] == "complete"
    people = next(t for t in done["targets"] if t["sync"] == "people_hook")
    assert [a["trigger"] for a in people["attempts"]] == ["forget", "sync", "sync"]
    assert [a["outcome"] for a in people["attempts"]] == ["pending", "pending", "done"]
    assert all(a["at"] for a in people["attempts"])
    assert people["attempts"][-1]["error"] is None
    assert clear_hits(project.dir, [email, str(person(3)["id"])]) == []


def test_forget_retry_sends_pending_erasures_now(project, server, capsys, monkeypatch):
    email = person(5)["email"].lower()
    _forget_with_failing_hook(project, server, capsys, monkeypatch, 5)
    # While pending, conn keeps the match value it needs to send the delete.
    assert clear_hits(project.dir, [email]) != []
    code, out = project.conn(capsys, monkeypatch, "forget", "--retry", "--json")
    assert code == 1 and json.loads(out) == {"erased": 0, "pending": 1}
    server.configure(error_rate=0.0, schedule=[Reply(200, json={"ok": True})])
    code, out = project.conn(capsys, monkeypatch, "forget", "--retry", "--json")
    assert code == 0 and json.loads(out) == {"erased": 1, "pending": 0}
    code, out = project.conn(capsys, monkeypatch, "forget", "--retry", "--json")
    assert code == 0 and json.loads(out) == {"erased": 0, "pending": 0}
    code, out = project.conn(capsys, monkeypatch, "forget", "--status", person(5)["email"],
                             "--json")
    [receipt] = json.loads(out)["receipts"]
    people = next(t for t in receipt["targets"] if t["sync"] == "people_hook")
    assert [(a["trigger"], a["outcome"]) for a in people["attempts"]] == [
        ("forget", "pending"), ("retry", "pending"), ("retry", "done")]
    assert clear_hits(project.dir, [email, str(person(5)["id"])]) == []


def test_a_destination_without_delete_is_left_to_a_person(project, server, capsys,
                                                         monkeypatch):
    """Webhook objects always delete; a files object in append-only mode does too, so
    the manual outcome is checked on the operation chooser directly."""
    from conn.destination import Capabilities, ObjectInfo
    from conn.runtime.forget import operation_of

    fields = {"type": "object", "properties": {"id": {}}}
    none = ObjectInfo("x", fields, ("id",), Capabilities(supports_delete=False,
                                                          modes=frozenset({"append"})))
    erase = ObjectInfo("x", fields, ("id",), Capabilities(erasure="Vendor GDPR delete"))
    assert operation_of(none) == "none"
    assert operation_of(erase) == "erase"
    assert operation_of(ObjectInfo("x", fields, ("id",), Capabilities())) == "delete"

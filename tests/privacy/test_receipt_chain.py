"""Receipts are hash-chained: ``conn forget --status`` checks the chain and says when an
entry was changed or removed (exit 8), and receipts hold no identifier in clear."""

from __future__ import annotations

import json

import duckdb
import pytest

from tests.conftest import sampled
from tests.privacy.conftest import person

pytestmark = pytest.mark.usefixtures("real_registry")


def _forget_two(project, capsys, monkeypatch) -> list[str]:
    project.sync_all(capsys, monkeypatch)
    ids = []
    for who in (1, 2):
        code, out = project.conn(capsys, monkeypatch, "forget", str(person(who)["id"]),
                                 "--json")
        assert code == 0, out
        ids.append(json.loads(out)["receipt_id"])
    return ids


def _ledger(project) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(project.dir / ".conn" / "state" / "runs.duckdb"))


def test_status_finds_a_receipt_by_subject_or_id(project, capsys, monkeypatch):
    first, _ = _forget_two(project, capsys, monkeypatch)
    for query in (first, person(1)["email"], str(person(1)["id"])):
        code, out = project.conn(capsys, monkeypatch, "forget", "--status", query, "--json")
        assert code == 0, out
        status = json.loads(out)
        assert status["chain"]["intact"] and status["chain"]["problems"] == []
        assert [r["receipt_id"] for r in status["receipts"]] == [first]
        text = json.dumps(status["receipts"]).lower()
        assert person(1)["email"].lower() not in text and str(person(1)["id"]) not in text
    code, out = project.conn(capsys, monkeypatch, "forget", "--status", "nobody@x.org")
    assert code == 1


@pytest.mark.parametrize("tamper", sampled(["change", "remove", "rehash"]))
def test_tampering_with_the_chain_shows(project, capsys, monkeypatch, tamper):
    first, _ = _forget_two(project, capsys, monkeypatch)
    con = _ledger(project)
    if tamper == "change":
        con.execute("UPDATE ledger SET body = replace(body, '\"done\"', '\"pending\"') "
                    "WHERE seq = 2")
    elif tamper == "remove":
        con.execute("DELETE FROM ledger WHERE seq = 2")
    else:
        # Changed and its own hash recomputed: the next entry no longer follows it.
        from conn.state.contracts import chain_hash

        prev, body = con.execute("SELECT prev, body FROM ledger WHERE seq = 1").fetchall()[0]
        body = body.replace('"suppressed":', '"suppressed_was":')
        con.execute("UPDATE ledger SET body = ?, hash = ? WHERE seq = 1",
                    [body, chain_hash(prev, body)])
    con.close()
    code, out = project.conn(capsys, monkeypatch, "forget", "--status", first, "--json")
    assert code == 8, out
    chain = json.loads(out)["chain"]
    assert not chain["intact"] and chain["problems"]
    code, out = project.conn(capsys, monkeypatch, "forget", "--status", first)
    assert code == 8

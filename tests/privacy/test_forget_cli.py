"""``conn forget`` as documented: ``--dry-run`` changes and sends nothing, the output
names no identifier but the subject typed, ``conn explain`` and previews withhold the
person afterwards, usage errors exit 3."""

from __future__ import annotations

import json

import pytest

from tests.privacy.conftest import clear_hits, person

pytestmark = pytest.mark.usefixtures("real_registry")


def _state_bytes(project) -> dict[str, bytes]:
    return {str(f.relative_to(project.dir)): f.read_bytes()
            for f in (project.dir / ".conn" / "state").rglob("*.duckdb")}


def test_dry_run_shows_the_plan_and_changes_nothing(project, server, capsys, monkeypatch):
    project.sync_all(capsys, monkeypatch)
    before, requests = _state_bytes(project), len(server.requests)
    code, out = project.conn(capsys, monkeypatch, "forget", str(person(3)["id"]),
                             "--dry-run", "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["dry_run"] is True and plan["identifiers"] == 3  # key, e-mail, lead's
    # The files destination has an erasure (it rewrites its files without the person);
    # the webhook deletes unless erase events are switched on.
    assert sorted((t["sync"], t["operation"], t["records"]) for t in plan["targets"]) == [
        ("events_files", "erase", 1), ("leads_hook", "delete", 1),
        ("people_files", "erase", 1), ("people_hook", "delete", 1)]
    assert person(3)["email"].lower() not in out.lower()
    assert _state_bytes(project) == before and len(server.requests) == requests
    code, out = project.conn(capsys, monkeypatch, "forget", "--status", str(person(3)["id"]))
    assert code == 1  # no receipt: nothing was done
    code, out = project.conn(capsys, monkeypatch, "forget", "nobody-known", "--dry-run")
    assert code == 0 and "no destination holds the person" in out


@pytest.mark.slow
def test_output_names_only_the_subject_typed(project, capsys, monkeypatch):
    project.sync_all(capsys, monkeypatch)
    for args in (["--json"], []):
        who = person(6 if args else 7)
        code, out = project.conn(capsys, monkeypatch, "forget", who["email"], *args)
        assert code == 0, out
        rest = out.replace(who["email"], "")
        assert who["email"].lower() not in rest.lower() and str(who["id"]) not in rest


def test_explain_and_preview_withhold_a_forgotten_person(project, capsys, monkeypatch):
    p = person(2)
    project.sync_all(capsys, monkeypatch)
    code, out = project.conn(capsys, monkeypatch, "explain", str(p["id"]), "--json")
    assert json.loads(out)["sent_by"]
    code, out = project.conn(capsys, monkeypatch, "forget", str(p["id"]))
    assert code == 0, out
    code, out = project.conn(capsys, monkeypatch, "explain", str(p["id"]), "--json")
    assert code == 0 and json.loads(out)["sent_by"] == []
    code, out = project.conn(capsys, monkeypatch, "preview", "people_hook", "-n", "50")
    assert code == 0 and p["email"] not in out


@pytest.mark.parametrize("args", [[], ["--retry", "x@y.org"], ["--status", "a", "--retry"],
                                  ["  "]])
def test_usage_errors_exit_3(project, capsys, monkeypatch, args):
    code, _ = project.conn(capsys, monkeypatch, "forget", *args)
    assert code == 3


@pytest.mark.slow
def test_retired_states_are_purged_too(project, server, capsys, monkeypatch):
    """A sync moved to another target keeps its old state under state/retired/
    (docs/sync-modes.md); conn forget removes the person from it as well."""
    p = person(4)
    project.sync_all(capsys, monkeypatch)
    yml = project.dir / "conn.yml"
    yml.write_text(yml.read_text().replace("/hook\"", "/hook2\""))
    code, out = project.conn(capsys, monkeypatch, "sync", "warehouse", "hook", "--new-target")
    assert code == 0, out
    retired = list((project.dir / ".conn" / "state" / "retired").glob("*.duckdb"))
    assert retired and clear_hits(project.dir, [p["email"]])
    code, out = project.conn(capsys, monkeypatch, "forget", str(p["id"]))
    assert code == 0, out
    assert clear_hits(project.dir, [p["email"], str(p["id"])]) == []

"""A holdout in whole syncs (conn.testing.sync.SyncHarness, memory state): mirror mode
deletes a held-out key the destination held before; a dry run splits but records
nothing; a changed design is refused with the file and path; a name shared by two syncs
is a configuration error."""

from __future__ import annotations

from pathlib import Path

import pytest
from conn.errors import ConfigError
from conn.testing.sync import SyncHarness

from tests import fakes
from tests.experiments.reference import is_held_out

ROWS = [{"id": i, "email": f"u{i}@example.com", "opt_in": i % 4 != 0} for i in range(60)]
MAPPING = {"email": "email"}
HOLDOUT = {"percent": 30, "salt": "t"}


@pytest.fixture
def h(tmp_path: Path):
    fakes.reset()
    with SyncHarness(tmp_path) as harness:
        harness.destination("crm", fakes.RecordingDestination, {}, purposes=["marketing"])
        harness.stream("people", ROWS, primary_key="id")
        yield harness
    fakes.reset()


def run(h: SyncHarness, **kw):
    settings = {"object": "contacts", "match_key": "email", "mode": "mirror",
                "mapping": MAPPING, "consent": {"columns": {"marketing": "opt_in"}},
                "name": "people_to_crm", **kw}
    return h.sync("crm", "people", **settings)


def held(i: int, salt: str = "t") -> bool:
    return is_held_out(str(i), 30, salt)


def emails(op: str) -> set[str]:
    return {r["email"] for _, o, rows in fakes.RECEIVED if o == op for r in rows}


def test_mirror_deletes_who_is_held_out_once_a_holdout_starts(h):
    first = run(h)
    assert first.status == "ok" and first.inserted == 45  # a quarter lacks consent
    fakes.RECEIVED.clear()
    second = run(h, holdout=HOLDOUT)
    consented = [r["id"] for r in ROWS if r["opt_in"]]
    assert emails("delete") == {f"u{i}@example.com" for i in consented if held(i)}
    assert emails("upsert") == set()  # the treatment arm was sent before, unchanged
    e = second.experiment
    assert (e["eligible"], e["held_out"], e["new_members"]) == \
        (45, sum(held(i) for i in consented), 45)


def test_a_dry_run_splits_and_records_nothing(h):
    rep = h.sync("crm", "people", object="contacts", match_key="email", mapping=MAPPING,
                 consent={"columns": {"marketing": "opt_in"}}, holdout=HOLDOUT,
                 name="people_to_crm", dry_run=True)
    consented = [r["id"] for r in ROWS if r["opt_in"]]
    assert rep.inserted == sum(not held(i) for i in consented)
    assert rep.experiment["new_members"] == 0
    assert h._store.experiment_store().experiments() == []


def test_a_changed_design_and_a_bad_name_are_refused(h):
    assert run(h, holdout=HOLDOUT).status == "ok"
    with pytest.raises(ConfigError) as err:
        run(h, holdout={**HOLDOUT, "percent": 40})
    assert "conn.yml: syncs.people_to_crm.holdout:" in str(err.value)
    assert "percent 30" in str(err.value) and "--new-experiment" in str(err.value)
    with pytest.raises(ConfigError) as err:
        run(h, holdout={**HOLDOUT, "name": "a b"})
    assert "syncs.people_to_crm.holdout.name" in str(err.value)


def test_an_experiment_name_shared_by_two_syncs_is_an_error():
    from conn.config.model import Project, SyncConfig
    from conn.experiments.spec import holdout_errors, project_holdouts

    def sync(name: str, holdout: dict) -> SyncConfig:
        return SyncConfig(name=name, source="s", destination="d", object="o",
                          raw={"holdout": holdout})

    project = Project(file=Path("conn.yml"), sources={}, destinations={}, syncs={
        "a": sync("a", {"percent": 10}), "b": sync("b", {"percent": 5, "name": "a"}),
        "c": sync("c", {"percent": 5, "salt": "x"})})
    [err] = holdout_errors(project)
    assert err.path == "syncs.b.holdout.name" and "sync 'a'" in str(err)
    specs = project_holdouts(project)
    assert (specs["a"].salt, specs["c"].salt) == ("a", "x")  # the salt defaults to the name

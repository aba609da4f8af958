"""A trigger's sync run by run (docs/traits.md): a key twice in one batch is evaluated
once with its last row; a dry run previews the events a run would send and writes
nothing, so the next run still sends them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from conn.config.load import load_project
from conn.plugins import Registry
from conn.runtime.runner import RunOptions, run_syncs
from conn.state.backends.memory import MemoryStateStore

from tests import fakes
from tests.traits.trigger_model import project


def _people(rows: list[tuple[str, float]]) -> pa.Table:
    return pa.table({"id": [k for k, _ in rows], "email": [f"u{k}@example.com" for k, _ in rows],
                     "health": pa.array([v for _, v in rows], pa.float64()),
                     "mkt": ["yes"] * len(rows)})


def test_duplicates_and_dry_runs(tmp_path: Path) -> None:
    fakes.reset()
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    proj = load_project(project(tmp_path / "p", cooldown=0), registry=reg)
    store = MemoryStateStore()

    planned: list[int] = []

    def run(rows: list[tuple[str, float]], **opts: object) -> list[str]:
        fakes.TABLES["people"] = (_people(rows), ("id",))
        fakes.RECEIVED.clear()
        rep = run_syncs(proj, list(proj.syncs.values()), reg, RunOptions(**opts),
                        store=store).syncs[0]
        assert rep.status in ("ok", "dry_run"), rep.error
        planned.append(rep.inserted)
        return [r["id"] for _, _, recs in fakes.RECEIVED for r in recs]

    assert run([("1", 60), ("2", 60)]) == []                 # first sight
    assert run([("1", 45), ("1", 30), ("2", 60)]) == ["1"]   # last row of key 1 crosses
    assert run([("1", 30), ("2", 20)]) == ["2"]              # key 1 stays disarmed
    assert run([("1", 60), ("2", 20)]) == []                 # key 1 re-arms
    assert run([("1", 10), ("2", 20)], dry_run=True) == []    # sends nothing...
    assert planned[-1] == 1                                  # ...and plans key 1's event
    assert run([("1", 10), ("2", 20)]) == ["1"]              # the dry run wrote nothing

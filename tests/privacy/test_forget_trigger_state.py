"""``conn forget`` leaves no trace of the person in a trigger's state (docs/privacy.md):
a trigger keeps each key's last watched value, and that entry is personal data too.
Afterwards the trigger's DuckDB file holds neither the key's bytes nor its entry, and
the other keys' entries are as they were."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from conn.config.load import load_project
from conn.plugins import Registry
from conn.runtime.forget import forget
from conn.runtime.runner import RunOptions, run_syncs
from conn.state.backends.duckdb.store import DuckDBStateStore

from tests import fakes
from tests.traits.trigger_model import project

GONE, KEPT = "kq7390041", "kq7390042"


def _people(health: dict[str, float]) -> pa.Table:
    return pa.table({"id": list(health), "email": [f"{k}@example.org" for k in health],
                     "health": pa.array(list(health.values()), pa.float64()),
                     "mkt": ["yes"] * len(health)})


def test_forget_removes_the_person_from_trigger_state(tmp_path: Path) -> None:
    fakes.reset()
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    proj = load_project(project(tmp_path / "p", cooldown=0), registry=reg)
    store = DuckDBStateStore(tmp_path / "state")
    for health in ({GONE: 60, KEPT: 60}, {GONE: 30, KEPT: 30}):
        fakes.TABLES["people"] = (_people(health), ("id",))
        [rep] = run_syncs(proj, list(proj.syncs.values()), reg, RunOptions(),
                          store=store).syncs
        assert rep.status == "ok", rep.error
    files = list((tmp_path / "state" / "triggers").glob("*.duckdb"))
    assert files and any(GONE.encode() in f.read_bytes() for f in files)

    forget(proj, reg, store, [f"{GONE}@example.org"])

    for f in (tmp_path / "state" / "triggers").iterdir():
        assert GONE.encode() not in f.read_bytes(), f.name
    entries = store.trigger_state("alerts", "health_dropped")
    assert entries is not None
    try:
        assert entries.entries().column("key").to_pylist() == [KEPT]
    finally:
        entries.close()

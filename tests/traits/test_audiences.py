"""Audiences (docs/traits.md): a sync with ``audience:`` in mirror mode holds exactly the
consenting members of the audience, run after run, as keys join and leave; members are
chosen by an AND/OR condition over a column and a trait. Real runtime, memory source,
recording destination, random memberships, against a plain model."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_n = itertools.count()


def member(plan: str, spend: int) -> bool:
    """The audience ``{all: ["spend > 100", {any: ["plan = 'pro'", "spend > 500"]}]}``."""
    return spend > 100 and (plan == "pro" or spend > 500)


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    keys = draw(st.integers(1, 6))
    runs = draw(st.integers(1, 5))
    row = st.tuples(st.sampled_from(["free", "pro"]), st.sampled_from([0, 50, 200, 800]),
                    st.sampled_from(["yes", "yes", "no"]))
    return {"runs": [[draw(row) for _ in range(keys)] for _ in range(runs)]}


def _project(folder: Path) -> Path:
    doc = {
        "version": 1,
        "sources": {"wh": {"type": "memory"}},
        "destinations": {"list": {"type": "recorder", "purposes": ["ads"]}},
        "traits": {"spend": {"source": "wh", "stream": "orders", "key": "customer",
                             "aggregate": "sum", "column": "amount"}},
        "audiences": {"big": {"where": {"all": ["spend > 100", {
            "any": ["plan = 'pro'", "spend > 500"]}]}}},
        "syncs": {"big_to_list": {
            "source": "wh", "stream": "people", "primary_key": "id", "destination": "list",
            "object": "contacts", "match_key": "email", "mode": "mirror",
            "audience": "big", "consent": {"columns": {"ads": "ok"}},
            "mapping": {"id": "id", "email": "email", "plan": "plan"}}},
    }
    folder.mkdir(parents=True)
    (folder / "conn.yml").write_text(yaml.safe_dump(doc))
    return folder / "conn.yml"


@pytest.mark.slow
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_mirror_holds_the_consenting_members(tmp_path: Path, sc: dict[str, Any]) -> None:
    from conn.config.load import load_project
    from conn.plugins import Registry
    from conn.runtime.runner import run_syncs
    from conn.state.backends.memory import MemoryStateStore

    from tests import fakes

    fakes.reset()
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    project = load_project(_project(tmp_path / f"a{next(_n)}"), registry=reg)
    store = MemoryStateStore()
    held: set[str] = set()
    for rows in sc["runs"]:
        ids = [str(i) for i in range(len(rows))]
        fakes.TABLES["people"] = (pa.table({
            "id": ids, "email": [f"u{i}@example.com" for i in ids],
            "plan": [r[0] for r in rows], "ok": [r[2] for r in rows]}), ("id",))
        # Spend arrives as two orders per customer (a trait over another stream).
        fakes.TABLES["orders"] = (pa.table({
            "customer": [int(i) for i in ids for _ in range(2)],
            "amount": [r[1] / 2 for r in rows for _ in range(2)]}), ())
        fakes.RECEIVED.clear()
        report = run_syncs(project, list(project.syncs.values()), reg, store=store)
        assert report.syncs[0].status == "ok", report.syncs[0].error
        for _, op, records in fakes.RECEIVED:
            for r in records:
                (held.discard if op == "delete" else held.add)(r["email"])
        want = {f"u{i}@example.com" for i, (plan, spend, ok) in enumerate(rows)
                if member(plan, spend) and ok == "yes"}
        assert held == want

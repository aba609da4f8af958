"""What ``conn triggers`` and the UI's triggers page report (conn.ops.triggers), against
what the destination took over random runs: events fired (sent or rejected) and
delivered (acknowledged), keys watched, and the latest firings by key with how many
events each key had delivered; and the command itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from conn.config.load import load_project
from conn.ops.triggers import triggers
from conn.plugins import Registry
from conn.runtime.runner import RunOptions, run_syncs
from conn.state.backends.memory import MemoryStateStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fakes
from tests.conftest import examples
from tests.traits.trigger_model import project

KEYS = ["1", "2", "3", "4"]


def _people(rows: dict[str, float]) -> pa.Table:
    return pa.table({"id": list(rows), "email": [f"u{k}@example.com" for k in rows],
                     "health": pa.array(list(rows.values()), pa.float64()),
                     "mkt": ["yes"] * len(rows)})


@pytest.mark.slow
@settings(max_examples=examples(10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(st.dictionaries(st.sampled_from(KEYS), st.sampled_from([10.0, 60.0]),
                                     min_size=1), min_size=1, max_size=6),
       rejected=st.sets(st.sampled_from(KEYS)), recent=st.integers(0, 5))
def test_counts_and_latest_firings_follow_the_runs(tmp_path_factory, runs, rejected,
                                                   recent):
    fakes.reset()
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    folder = tmp_path_factory.mktemp("p")
    path = project(folder / "p", cooldown=0)
    doc = yaml.safe_load(path.read_text())
    doc["destinations"]["crm"]["config"]["reject"] = [f"u{k}@example.com"
                                                      for k in sorted(rejected)]
    path.write_text(yaml.safe_dump(doc))
    proj = load_project(path, registry=reg)
    store = MemoryStateStore()
    fired = delivered = 0
    acked: dict[str, int] = {}
    seen: set[str] = set()
    for rows in runs:
        fakes.TABLES["people"] = (_people(rows), ("id",))
        fakes.RECEIVED.clear()
        rep = run_syncs(proj, list(proj.syncs.values()), reg, RunOptions(),
                        store=store).syncs[0]
        assert rep.status in ("ok", "rejected"), rep.error
        fired += rep.inserted + rep.rejected
        delivered += rep.inserted
        seen |= set(rows)
        for _, _, recs in fakes.RECEIVED:
            for r in recs:
                if r["id"] not in rejected:
                    acked[r["id"]] = acked.get(r["id"], 0) + 1
    (t,) = triggers(proj, store, recent=recent)
    (s,) = t["syncs"]
    assert (t["events_fired"], t["events_delivered"]) == (fired, delivered)
    assert s["events_delivered"] == sum(acked.values()) == delivered
    assert s["keys"] == len(seen) and s["keys_fired"] == len(acked)
    assert s["runs"] == len(runs)
    assert len(s["recent"]) == min(recent, len(acked))
    assert all(acked[r["key"]] == r["events"] for r in s["recent"])
    # Newest first (the times are shown to the second).
    times = [r["fired_at"] for r in s["recent"]]
    assert times == sorted(times, reverse=True)


def test_the_command_lists_and_names_a_trigger(tmp_path: Path, registry, monkeypatch,
                                               capsys) -> None:
    from tests.cli_in_process import run_cli

    project(tmp_path / "p", cooldown=0)
    monkeypatch.chdir(tmp_path / "p")
    code, out, err = run_cli(monkeypatch, capsys, "triggers", "--json")
    assert code == 0, err
    (t,) = json.loads(out)["triggers"]
    assert t["definition"]["watch"] == "health" and "below" in t["definition"]
    assert t["events_fired"] == 0 and t["syncs"][0]["sync"] == "alerts"
    code, out, _ = run_cli(monkeypatch, capsys, "triggers")
    assert code == 0 and "health_dropped" in out and "alerts" in out
    code, _, err = run_cli(monkeypatch, capsys, "triggers", "nope", "--json")
    assert code == 3 and "no trigger named 'nope'" in err + _


@pytest.fixture(autouse=True)
def _clean() -> Any:
    yield
    fakes.reset()

"""A plain model of a threshold trigger with hysteresis and cooldown (docs/traits.md),
and runs of the real runtime against it: each run reads every key's current value and
consent, and the destination acknowledges its events, loses them (never confirmed:
conn re-sends them later) or takes them without conn learning of it (a crash after the
vendor's answer: the same events come again, with the same ids)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from hypothesis import strategies as st

BELOW, REARM, COOLDOWN = 40.0, 50.0, 100.0
OUTCOMES = ("ack", "ack", "lost", "dup")


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    keys = draw(st.integers(1, 4))
    runs = draw(st.integers(1, 10))
    values = st.one_of(st.none(), st.sampled_from([10, 39, 40, 45, 50, 51, 90]))
    return {
        "keys": keys,
        "values": [[draw(values) for _ in range(keys)] for _ in range(runs)],
        "consent": [[draw(st.sampled_from(["yes", "yes", "no"])) for _ in range(keys)]
                    for _ in range(runs)],
        # Seconds between runs: the cooldown (100 s) is sometimes over, sometimes not.
        "gaps": [draw(st.sampled_from([10, 60, 150])) for _ in range(runs)],
        "outcomes": [draw(st.sampled_from(OUTCOMES)) for _ in range(runs)],
    }


def model(sc: dict[str, Any]) -> list[list[tuple[int, int]]]:
    """Per run: the (key, event number) sent, in key order."""
    state: dict[int, dict[str, Any]] = {}
    t, out = 0.0, []
    for run, values in enumerate(sc["values"]):
        t += sc["gaps"][run]
        sent = []
        for k, v in enumerate(values):
            if v is None:
                continue
            past, back = v < BELOW, v >= REARM
            s = state.get(k)
            if s is None:
                state[k] = {"armed": not past, "fired_at": None, "seq": 0}
                continue
            ready = s["armed"] or back
            cool = s["fired_at"] is None or t - s["fired_at"] >= COOLDOWN
            if ready and past and cool:
                consented = sc["consent"][run][k] == "yes"
                outcome = sc["outcomes"][run]
                if consented and outcome != "lost":
                    sent.append((k, s["seq"] + 1))
                if consented and outcome == "ack":
                    state[k] = {"armed": False, "fired_at": t, "seq": s["seq"] + 1}
            else:
                s["armed"] = ready
        out.append(sent)
    return out


def project(folder: Path, cooldown: float = COOLDOWN) -> Path:
    trigger: dict[str, Any] = {"watch": "health", "below": BELOW, "rearm": REARM}
    if cooldown:
        trigger["cooldown"] = f"{int(cooldown)}s"
    doc = {
        "version": 1,
        "sources": {"wh": {"type": "memory"}},
        "destinations": {"crm": {"type": "recorder", "purposes": ["marketing"],
                                 "config": {"modes": ["events", "upsert"]}}},
        "triggers": {"health_dropped": trigger},
        "syncs": {"alerts": {
            "source": "wh", "stream": "people", "primary_key": "id", "destination": "crm",
            "object": "contacts", "match_key": "email", "mode": "events",
            "trigger": "health_dropped",
            "event": {"name": "health_dropped", "time_from": "trigger_at"},
            "consent": {"columns": {"marketing": "mkt"}},
            "mapping": {"id": "id", "email": "email"}}},
    }
    folder.mkdir(parents=True)
    (folder / "conn.yml").write_text(yaml.safe_dump(doc))
    return folder / "conn.yml"


def run_all(folder: Path, sc: dict[str, Any], store: Any = None
            ) -> list[list[tuple[int, str]]]:
    """Run the sync once per run of ``sc`` with the real runtime (one state store kept
    across runs: ``store``, by default a memory one; each run's clock ``gaps`` seconds
    after the last); per run: the (key, event id) the destination took, in key order."""
    from conn.config.load import load_project
    from conn.destination import WriteResult
    from conn.plugins import Registry
    from conn.runtime.report import RunInfo
    from conn.runtime.runner import SyncRunner
    from conn.state.backends.memory import MemoryStateStore

    from tests import fakes

    fakes.reset()
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    proj = load_project(project(folder), registry=reg)
    store = store if store is not None else MemoryStateStore()
    taken: list[tuple[int, str]] = []
    outcome = ["ack"]

    def hook(request: Any) -> WriteResult | None:
        n = len(request)
        ids = request.records.column("id").to_pylist()
        if outcome[0] != "lost":
            taken.extend(zip((int(i) for i in ids), request.idempotency_keys(), strict=True))
        return None if outcome[0] == "ack" else WriteResult.all_pending(n)

    fakes.WRITE_HOOK.append(hook)
    t0, out = 1.8e9, []
    for run in range(len(sc["values"])):
        t0 += sc["gaps"][run]
        outcome[0] = sc["outcomes"][run]
        fakes.TABLES["people"] = (people(sc, run), ("id",))
        taken.clear()
        info = dataclasses.replace(RunInfo.new(folder, ["alerts"]), started_at=t0)
        rep = SyncRunner(proj, proj.syncs["alerts"], reg, store, info).run()
        assert rep.status in ("ok", "failed"), rep.error
        out.append(sorted(taken))
    return out


def numbered(runs: list[list[tuple[int, str]]]) -> list[list[tuple[int, int]]]:
    """Event ids replaced by their number per key, in order of first sight: what
    :func:`model` gives."""
    seen: dict[int, list[str]] = {}
    out = []
    for taken in runs:
        row = []
        for k, ident in taken:
            ids = seen.setdefault(k, [])
            if ident not in ids:
                ids.append(ident)
            row.append((k, ids.index(ident) + 1))
        out.append(row)
    return out


def people(sc: dict[str, Any], run: int) -> pa.Table:
    ids, vals, mkt = [], [], []
    for k in range(sc["keys"]):
        ids.append(str(k))
        vals.append(sc["values"][run][k])
        mkt.append(sc["consent"][run][k])
    return pa.table({"id": ids, "email": [f"u{i}@example.com" for i in ids],
                     "health": pa.array(vals, pa.float64()), "mkt": mkt})


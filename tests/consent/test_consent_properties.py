"""Property tests: whatever the rows, events and purposes, a destination receives only
rows with consent (or a declared legal basis) for every purpose at run time, and every
withheld row is counted.

Three paths: the real runtime (``conn.runtime.runner.run_syncs`` with the test kit's
memory source and recording destination), and gate + mapper + ``conn.runtime.delivery``
directly, batch by batch; and a trigger's events (``triggers:``), run after run.
The runtime and streaming tests also draw a holdout experiment
(docs/experiments.md): a held-out row never reaches the destination either, and a holdout
never lets through a row the gate withheld.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conn.consent import build_gate
from conn.destination import ObjectInfo
from conn.mapping import build_mapper
from conn.runtime import delivery
from conn.testing.sandbox import make_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.experiments.reference import is_held_out
from tests.traits.trigger_model import scenarios as trigger_scenarios

PURPOSES = ("marketing", "analytics", "advertising")
STATUSES = ("granted", "denied", "revoked", "yes", "maybe", None)
COLUMN_VALUES = ("yes", "no", "maybe", None)
TIMES = ("2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T00:00:00", None,
         "garbage")
RANK = {"granted": 1, "yes": 1, "denied": 3, "revoked": 3}


def event_code(status: str | None, ts: str | None) -> int:
    code = RANK.get(status, 2) if status is not None else 2  # unreadable: malformed
    if ts is None or ts == "garbage":
        code = max(code, 2)
    return code


def oracle(ids: list[int], mkt: list[str | None], events: list[tuple], purposes: tuple,
           bases: dict[str, str]) -> set[int]:
    """Plain-Python reference: latest event per subject and purpose (unplaceable events
    are latest; ties go to the most restrictive), column for marketing, max combines."""
    col_code = {"yes": 1, "no": 3, "maybe": 2, None: 0}
    allowed = set()
    for i, m in zip(ids, mkt, strict=True):
        ok = True
        for p in purposes:
            evs = [(s, t) for (subj, pp, s, t) in events if subj == str(i) and pp == p]
            code = 0
            if evs:
                def order(e: tuple) -> tuple:
                    bad = e[1] is None or e[1] == "garbage"
                    return (bad, "" if bad else e[1], event_code(*e))
                code = event_code(*max(evs, key=order))
            if p == "marketing":
                code = max(code, col_code[m])
            if not (code == 1 or (code == 0 and p in bases)):
                ok = False
        if ok:
            allowed.add(i)
    return allowed


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(0, 40))
    ids = list(range(n))
    mkt = draw(st.lists(st.sampled_from(COLUMN_VALUES), min_size=n, max_size=n))
    subjects = [str(i) for i in range(n + 3)]  # some events for people not synced
    events = draw(st.lists(st.tuples(st.sampled_from(subjects) if subjects else st.just("x"),
                                     st.sampled_from(PURPOSES), st.sampled_from(STATUSES),
                                     st.sampled_from(TIMES)), max_size=80))
    purposes = tuple(draw(st.lists(st.sampled_from(PURPOSES), unique=True, max_size=3)))
    bases = {p: "contract" for p in purposes if draw(st.booleans())}
    batch_rows = draw(st.integers(1, 16))
    return {"ids": ids, "mkt": mkt, "events": events, "purposes": purposes,
            "bases": bases, "batch_rows": batch_rows, "holdout": draw(holdouts())}


def holdouts() -> st.SearchStrategy[dict[str, Any] | None]:
    """No holdout, or a percent and salt (large shares too, so that small tests hold out
    someone)."""
    return st.none() | st.fixed_dictionaries({
        "percent": st.sampled_from((10, 50, 90, 33.3)),
        "salt": st.text("abcxyz", min_size=1, max_size=4)})


def not_held_out(ids: set[int], holdout: dict[str, Any] | None) -> set[int]:
    if holdout is None:
        return ids
    return {i for i in ids if not is_held_out(str(i), holdout["percent"], holdout["salt"])}


def tables(sc: dict[str, Any]) -> tuple[pa.Table, pa.Table]:
    rows = pa.table({"id": pa.array([str(i) for i in sc["ids"]], pa.string()),
                     "email": pa.array([f"u{i}@example.com" for i in sc["ids"]], pa.string()),
                     "mkt": pa.array(sc["mkt"], pa.string())})
    ev = sc["events"]
    events = pa.table({
        "customer": pa.array([e[0] for e in ev], pa.string()),
        "purpose": pa.array([e[1] for e in ev], pa.string()),
        "status": pa.array([e[2] for e in ev], pa.string()),
        "timestamp": pa.array([e[3] for e in ev], pa.string())})
    return rows, events


@settings(max_examples=examples(60), deadline=None)
@given(scenarios())
def test_gate_mapper_delivery_sends_only_consented_rows(sc: dict[str, Any]) -> None:
    from tests import fakes

    fakes.reset()
    rows, events = tables(sc)
    consent = {"columns": {"marketing": "mkt"}, "source": "cs", "legal_basis": sc["bases"]}
    ctx = make_context(rows.schema, purposes=sc["purposes"], consent=consent,
                       mapping={"id": "id", "email": "email"}, match_key="email",
                       policies={"*": "allow"}, fields=fakes.CONTACT_FIELDS,
                       identifiers=("email", "id"),
                       consent_sources={"cs": {"source": "src", "stream": "ev",
                                               "subject": "customer"}},
                       events={"ev": events})
    gate, mapper = build_gate(ctx), build_mapper(ctx)
    assert gate.issues() == [] and mapper.issues() == []
    dest = fakes.RecordingDestination({}, instance="rec")
    obj: ObjectInfo = dest.object("contacts")
    withheld = 0
    for batch in rows.to_batches(max_chunksize=sc["batch_rows"]):
        gated = gate.apply(batch, batch.column("id"))
        withheld += gated.withheld
        mapped = mapper.apply(gated)
        assert mapped.rejected == []
        dest.write(delivery.request_from_plan("s", obj, "upsert", mapped, None, "email"))
    received = [int(r["id"]) for _, _, recs in fakes.RECEIVED for r in recs]
    expected = oracle(sc["ids"], sc["mkt"], sc["events"], sc["purposes"], sc["bases"])
    assert sorted(received) == sorted(expected)
    assert withheld == len(sc["ids"]) - len(expected)
    s = gate.summary()
    assert s["rows"] == len(sc["ids"])
    assert s["passed"] == len(expected)
    assert s["withheld"] == withheld == sum(s["withheld_by_reason"].values())
    for p in sc["purposes"]:
        per = s["per_purpose"][p]
        assert per["passed"] + sum(per["withheld"].values()) == len(sc["ids"])
        assert sum(s["legal_bases"][p].values()) == len(expected)


_counter = itertools.count()


def _project(tmp: Path, sc: dict[str, Any]) -> Path:
    import yaml

    purposes = list(sc["purposes"])
    sync: dict[str, Any] = {
        "source": "wh", "stream": "people", "destination": "crm", "object": "contacts",
        "primary_key": "id", "match_key": "email", "mapping": {"id": "id", "email": "email"},
        "consent": {"columns": {"marketing": "mkt"}, "source": "cs",
                    "legal_basis": sc["bases"]},
    }
    if sc.get("holdout"):
        sync["holdout"] = sc["holdout"]
    doc = {
        "version": 1,
        "state": {"backend": "memory"},
        "sources": {"wh": {"type": "memory"}},
        "destinations": {"crm": {"type": "recorder", "purposes": purposes,
                                 "policies": {"*": "allow"}}},
        "consent_sources": {"cs": {"source": "wh", "stream": "consent",
                                   "subject": "customer"}},
        "syncs": {"people_to_crm": sync},
    }
    path = tmp / f"p{next(_counter)}" / "conn.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@settings(max_examples=examples(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_runtime_sends_only_consented_rows(tmp_path: Path, sc: dict[str, Any]) -> None:
    from conn.config.load import load_project
    from conn.plugins import Registry
    from conn.runtime.runner import RunOptions, open_state_store, run_syncs

    from tests import fakes

    fakes.reset()
    rows, events = tables(sc)
    fakes.TABLES["people"] = (rows, ("id",))
    fakes.TABLES["consent"] = (events, ())
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    project = load_project(_project(tmp_path, sc), registry=reg)
    store = open_state_store(project, reg)
    report = run_syncs(project, list(project.syncs.values()), reg,
                       RunOptions(batch_rows=sc["batch_rows"]), store=store)
    rep = report.syncs[0]
    assert rep.status == "ok", rep.error
    received = [int(r["id"]) for _, _, recs in fakes.RECEIVED for r in recs]
    consented = oracle(sc["ids"], sc["mkt"], sc["events"], sc["purposes"], sc["bases"])
    expected = not_held_out(consented, sc["holdout"])
    assert sorted(received) == sorted(expected)
    assert rep.consent_denied == len(sc["ids"]) - len(consented)
    assert rep.consent["withheld"] == rep.consent_denied
    if sc["holdout"]:
        # Every consented key is a member, in its arm; nobody the gate withheld is.
        assert rep.experiment["eligible"] == len(consented)
        assert rep.experiment["held_out"] == len(consented) - len(expected)
        members = store_members(store, "people_to_crm")
        assert members == {str(i): "treatment" if i in expected else "holdout"
                           for i in consented}


def store_members(store: Any, experiment: str) -> dict[str, str]:
    """The experiment's members and arms as the state store recorded them."""
    exp = store.experiment_store()
    assert exp is not None
    members = exp.members(experiment).to_pydict()
    return dict(zip(members["key"], members["arm"], strict=True))


# --- streaming syncs ------------------------------------------------------------------------

STREAM_SCHEMA = pa.schema([("id", pa.string()), ("email", pa.string()),
                           ("name", pa.string()), ("mkt", pa.string())])


@st.composite
def change_feeds(draw: Any) -> dict[str, Any]:
    """A feed of changes to a few people: inserts, updates that grant or withdraw
    consent (or leave it unreadable), deletes; appended in random groups."""
    n = draw(st.integers(1, 30))
    changes = []
    for k in range(n):
        op = draw(st.sampled_from(("insert", "update", "update", "delete")))
        changes.append({"id": str(draw(st.integers(0, 6))), "name": f"c{k}", "op": op,
                        "mkt": draw(st.sampled_from(COLUMN_VALUES))})
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=5))) | {n})
    return {"changes": changes, "cuts": cuts, "batch_rows": draw(st.integers(1, 8)),
            "mode": draw(st.sampled_from(("mirror", "upsert"))), "holdout": draw(holdouts())}


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change_feeds())
def test_streaming_sends_only_consented_changes(tmp_path: Path, sc: dict[str, Any]) -> None:
    """A followed change reaches the destination only if the gate passes it (consent in
    the row at that change); in mirror mode the destination ends with exactly the rows
    whose last change is consented, withdrawn ones deleted."""
    from conn.testing.sync import SyncHarness

    from tests import fakes

    fakes.reset()
    folder = tmp_path / f"s{next(_counter)}"
    with SyncHarness(folder) as h:
        h.destination("crm", fakes.RecordingDestination, {}, purposes=["marketing"])
        h.stream("people", pa.Table.from_pylist([], schema=STREAM_SCHEMA), primary_key="id")
        f = h.follow("crm", "people", object="contacts", match_key="email", mode=sc["mode"],
                     mapping={"id": "id", "email": "email", "name": "name"},
                     consent={"columns": {"marketing": "mkt"}}, max_latency_ms=5,
                     batch_rows=sc["batch_rows"],
                     **({"holdout": sc["holdout"]} if sc["holdout"] else {}))
        changes, start = sc["changes"], 0
        for cut in sc["cuts"]:
            part = changes[start:cut]
            h.changes("people", [{"id": c["id"], "email": f"u{c['id']}@example.com",
                                  "name": c["name"], "mkt": c["mkt"]} for c in part],
                      [c["op"] for c in part])
            start = cut
        assert f.wait_rows(len(changes), timeout=30)
        rep = f.stop()
    assert rep.status == "ok", rep.error
    sent_on = not_held_out({int(c["id"]) for c in changes}, sc["holdout"])
    consented = {c["name"] for c in changes if c["op"] != "delete" and c["mkt"] == "yes"
                 and int(c["id"]) in sent_on}
    held: dict[str, str] = {}
    for _, op, records in fakes.RECEIVED:
        for r in records:
            if op == "delete":
                held.pop(r["email"], None)
                continue
            assert r["name"] in consented, \
                f"change {r} reached the destination without consent or held out"
            held[r["email"]] = r["name"]
    if sc["mode"] == "mirror":
        last: dict[str, dict[str, Any]] = {}
        for c in changes:
            last[c["id"]] = c
        expected = {f"u{i}@example.com": c["name"] for i, c in last.items()
                    if c["op"] != "delete" and c["mkt"] == "yes" and int(i) in sent_on}
        assert held == expected


# --- trigger events -------------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trigger_scenarios())
def test_trigger_events_pass_the_gate(tmp_path: Path, sc: dict[str, Any]) -> None:
    """A trigger's events (docs/traits.md) take the gate like every row: the destination
    gets an event only for a key whose row consents in that run; a withheld crossing is
    sent in a later run where consent is given and the value is still past the
    threshold (the trigger's state of that key is not written without an
    acknowledgement)."""
    from tests.traits.trigger_model import run_all

    runs = run_all(tmp_path / f"t{next(_counter)}", sc)
    for run, taken in enumerate(runs):
        for key, _ in taken:
            assert sc["consent"][run][key] == "yes", f"run {run}: key {key} without consent"

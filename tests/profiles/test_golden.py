"""Golden records follow the survivorship rules of docs/profiles.md, compared with a
plain per-profile model over random rows; the consent rule (latest wins, a denial wins at
the same instant) included."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from conn.config.profiles import Edge, FieldRule, IdentifierType, ProfileSet
from conn.profiles.golden import golden
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples

EDGES = ("crm", "app")
T0 = datetime(2026, 1, 1, tzinfo=UTC)

PS = ProfileSet(
    name="people",
    types={"email": IdentifierType("email", "email", 0)},
    edges={e: Edge(e, "wh", e, None, {"mail": "email"}, "ts") for e in EDGES},
    rounds=(("email",),),
    fields={
        "recent": FieldRule("recent", "v", "most_recent"),
        "frequent": FieldRule("frequent", "v", "most_frequent"),
        "priority": FieldRule("priority", "v", "source_priority", ("app", "crm")),
        "first": FieldRule("first", "v", "first_non_null"),
        "hi": FieldRule("hi", "v", "max"),
        "lo": FieldRule("lo", "v", "min"),
        "ok": FieldRule("ok", "ok", "consent"),
    })

# A row: (profile 0-3, edge 0-1, value or None, consent or None, time slot 0-3)
rows_st = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1),
                             st.none() | st.integers(0, 5), st.none() | st.booleans(),
                             st.integers(0, 3)), min_size=1, max_size=30)


def model(rows: list[tuple]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for p in sorted({r[0] for r in rows}):
        mine = [(k, r) for k, r in enumerate(rows) if r[0] == p]
        vals = [(k, r) for k, r in mine if r[2] is not None]
        # Ties of time go to the record key (the row number here), as documented.
        by_time = sorted(vals, key=lambda kr: (kr[1][4], kr[0]))
        counts = Counter(r[2] for _, r in vals)
        prio = [r[2] for e in ("app", "crm") for k, r in sorted(vals)
                if EDGES[r[1]] == e]
        oks = [r for _, r in mine if r[3] is not None]
        latest = max((r[4] for r in oks), default=None)
        out[f"p{p}"] = {
            "recent": by_time[-1][1][2] if vals else None,
            "first": min(vals, key=lambda kr: (kr[1][4], kr[1][1], kr[0]))[1][2]
            if vals else None,
            "frequent": max(counts.items(), key=lambda c: (c[1], c[0]))[0] if vals else None,
            "priority": prio[0] if prio else None,
            "hi": max(counts) if vals else None, "lo": min(counts) if vals else None,
            "ok": None if latest is None else
            all(r[3] for r in oks if r[4] == latest),
            "records": len(mine),
        }
    return out


def tables(rows: list[tuple]) -> tuple[dict[str, pa.Table], pa.Table, pa.Table]:
    per_edge: dict[str, dict[str, list]] = {e: {"rkey": [], "_updated_at": [], "v": [],
                                                "ok": []} for e in EDGES}
    for k, (_, e, v, ok, slot) in enumerate(rows):
        t = per_edge[EDGES[e]]
        t["rkey"].append(k)
        t["_updated_at"].append(T0 + timedelta(hours=slot))
        t["v"].append(v)
        t["ok"].append(ok)
    out = {}
    for e, t in per_edge.items():
        out[e] = pa.table({"rkey": pa.array(t["rkey"], pa.uint64()),
                           "_updated_at": pa.array(t["_updated_at"],
                                                   pa.timestamp("us", "UTC")),
                           "v": pa.array(t["v"], pa.int64()),
                           "ok": pa.array(t["ok"], pa.bool_())})
    keys = pa.array(range(len(rows)), pa.uint64())
    records = pa.table({"rkey": keys, "profile": [f"p{r[0]}" for r in rows]})
    entries = pa.table({"rkey": keys,
                        "ident": [f"email\x1fu{r[0]}@example.com" for r in rows]})
    return out, records, entries


@settings(max_examples=examples(25))
@given(rows=rows_st)
def test_golden_fields_follow_their_rules(rows: list[tuple]) -> None:
    got = golden(PS, *tables(rows)).to_pylist()
    want = model(rows)
    assert [g["profile_id"] for g in got] == sorted(want)
    for g in got:
        w = want[g["profile_id"]]
        for f in ("recent", "first", "frequent", "priority", "hi", "lo", "records"):
            assert g[f] == w[f], (f, g, w)
        assert g["email"] == f"u{g['profile_id'][1:]}@example.com"
        assert g["email_all"] == [g["email"]]


def test_consent_denial_wins_at_the_same_instant() -> None:
    rows = [(0, 0, None, True, 2), (0, 1, None, False, 2), (0, 0, None, True, 1)]
    (g,) = golden(PS, *tables(rows)).to_pylist()
    assert g["ok"] is False

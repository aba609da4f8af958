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


def two_types(first: str, second: str) -> ProfileSet:
    """A set of two identifier types named ``first`` and ``second``."""
    return ProfileSet(
        name="people",
        types={first: IdentifierType(first, "email", 0),
               second: IdentifierType(second, "device_id", 1)},
        edges={"app": Edge("app", "wh", "app", None, {"mail": first, "dev": second},
                           None)},
        rounds=((first, second),), fields={})


# Type names are any text: one a prefix of the other, non-ASCII, spaces.
names_st = st.sampled_from([("email", "device_id"), ("id", "id2"), ("id2", "id"),
                            ("é-mail", "日本 id"), ("a b", "a")])
# A record: (profile 0-4, first type's values, second type's values), values drawn from
# small pools so that records of one profile share some and their counts tie.
record_st = st.tuples(st.integers(0, 4), st.sets(st.sampled_from("abcdé"), max_size=3),
                      st.sets(st.sampled_from(["x", "y", "Y", "x y", "日"]), max_size=2))


@settings(max_examples=examples(50))
@given(names=names_st, records=st.lists(record_st, min_size=1, max_size=25))
def test_identifier_columns_hold_the_most_held_value_and_all_values(
        names: tuple[str, str], records: list[tuple]) -> None:
    """docs/profiles.md: per type, ``TYPE`` is the value most of the profile's records
    hold (ties: the least) and ``TYPE_all`` every value, sorted; a type the profile has
    no value of gives null in both."""
    rkeys, profiles, entry_keys, idents = [], [], [], []
    for k, (p, mails, devices) in enumerate(records):
        rkeys.append(k)
        profiles.append(f"p{p}")
        for kind, values in zip(names, (mails, devices), strict=True):
            for v in values:
                entry_keys.append(k)
                idents.append(f"{kind}\x1f{v}")
    rows = {"app": pa.table({"rkey": pa.array(rkeys, pa.uint64()),
                             "_updated_at": pa.nulls(len(rkeys), pa.timestamp("us", "UTC"))})}
    got = golden(two_types(*names), rows, pa.table({"rkey": pa.array(rkeys, pa.uint64()),
                                      "profile": profiles}),
                 pa.table({"rkey": pa.array(entry_keys, pa.uint64()),
                           "ident": pa.array(idents, pa.string())})
                 ).to_pylist()
    assert [g["profile_id"] for g in got] == sorted(set(profiles))
    for g in got:
        mine = [r for r in records if f"p{r[0]}" == g["profile_id"]]
        assert g["records"] == len(mine)
        for kind, at in zip(names, (1, 2), strict=True):
            held = Counter(v for r in mine for v in r[at])
            if not held:
                assert g[kind] is None and g[f"{kind}_all"] is None, g
                continue
            most = max(held.values())
            assert g[kind] == min(v for v, n in held.items() if n == most), (kind, g, held)
            assert g[f"{kind}_all"] == sorted(held), (kind, g)


def test_edge_masks_reach_numpy_as_integers() -> None:
    """Each profile's edge mask comes out of DuckDB as a 64-bit integer: a wider type
    (DuckDB's shift gives a 128-bit decimal) reaches numpy as Python objects, many
    times slower at millions of profiles."""
    import duckdb
    from conn.profiles.golden import _fields

    con = duckdb.connect()
    con.register("recs", pa.table({"rkey": pa.array([1, 2], pa.uint64()),
                                   "p": pa.array([0, 0], pa.int32())}))
    rows = {e: pa.table({"rkey": pa.array([k], pa.uint64()),
                         "_updated_at": pa.array([T0], pa.timestamp("us", "UTC")),
                         "v": pa.array([k]), "ok": pa.array([True])})
            for k, e in enumerate(EDGES, 1)}
    sql, params = _fields(con, PS, rows)
    masks = con.sql(sql, params=params).to_arrow_table().column("_edges")
    assert masks.type == pa.uint64()
    assert masks.to_pylist() == [0b11]

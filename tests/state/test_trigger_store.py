"""A trigger's stored entries (docs/traits.md, "Triggers"), per state backend: random
commits, folds, reopenings and forgets against a dict; each key's latest entry is what
a run's lookup (:class:`conn.state.triggers.EntryIndex` over the store's layers), a
micro-batch's :meth:`load` and :meth:`entries` give. Entries of the earlier layout (one
table by key text) and ids of another hash function are read again after an upgrade."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conn.state.planner.row_hashes import connect, key_ids
from conn.state.triggers import SCHEMA, EntryIndex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import unavailable
from tests.state.conftest import PG_URL, make_store, pg_available

pytestmark = pytest.mark.one_planner_path

KEYS = [f"k{i}" for i in range(12)] + ["", "é", "a\x1fb"]
_n = itertools.count()


def _kids(keys: list[str]) -> np.ndarray:
    with connect() as con:
        return np.asarray(key_ids(con, pa.array(keys, pa.string())), np.uint64)


def _rows(entries: dict[str, tuple[Any, ...]]) -> pa.Table:
    keys = list(entries)
    cols = list(zip(*entries.values(), strict=True)) if entries else [[], [], [], []]
    return pa.Table.from_arrays(
        [pa.array(_kids(keys), pa.uint64()), pa.array(keys, pa.string()),
         *[pa.array(c, t) for c, t in zip(cols, SCHEMA.types[2:], strict=True)]],
        schema=SCHEMA)


def _check(store: Any, model: dict[str, tuple[Any, ...]]) -> None:
    asked = [*KEYS, "never"]
    want = [(k in model, *model.get(k, (None, None, None, None))) for k in asked]
    kids = _kids(asked)
    for got in (EntryIndex(store.layers()).lookup(pa.array(asked), kids),
                store.load(pa.array(asked), kids)):
        assert [tuple(r.values()) for r in got.to_pylist()] == want
    table = store.entries()
    assert sorted((r["key"], r["armed"], r["value"], r["fired_at"], r["seq"])
                  for r in table.to_pylist()) == sorted((k, *v) for k, v in model.items())
    assert table.column("kid").to_pylist() == list(_kids(table.column("key").to_pylist()))


entry = st.tuples(st.booleans(), st.one_of(st.none(), st.sampled_from(["1", "39.5", "x"])),
                  st.one_of(st.none(), st.floats(0, 2e9)), st.integers(0, 5))
op = st.one_of(
    st.tuples(st.just("commit"), st.dictionaries(st.sampled_from(KEYS), entry, max_size=6)),
    st.tuples(st.just("fold"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
    st.tuples(st.just("forget"), st.lists(st.sampled_from(KEYS), max_size=3)))

KINDS = ["memory", "duckdb", pytest.param("postgres", marks=pytest.mark.services)]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=12))
def test_latest_entry_per_key(kind: str, tmp_path: Path, ops: list[Any]) -> None:
    if kind == "postgres" and not pg_available():
        unavailable("PostgreSQL not reachable at 127.0.0.1:5432")
    schema = f"conn_trig_{uuid.uuid4().hex[:10]}"
    state = make_store(kind, tmp_path / f"s{next(_n)}", schema)
    store = state.trigger_state("sync", "trig")
    assert store is not None
    model: dict[str, tuple[Any, ...]] = {}
    try:
        for what, arg in ops:
            if what == "commit":
                store.commit(_rows(arg))
                model.update(arg)
            elif what == "fold" and hasattr(store, "fold"):
                store.fold()
            elif what == "reopen":
                store.close()
                store = state.trigger_state("sync", "trig")
            elif what == "forget":
                gone = store.forget(arg)
                assert gone == len(set(arg) & set(model))
                for k in arg:
                    model.pop(k, None)
                store.close()  # (a file is closed already: forget rewrote it)
                store = state.trigger_state("sync", "trig")
            _check(store, model)
    finally:
        store.close()
        state.close()
        if kind == "postgres":
            drop_schema(schema)


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_earlier_layout_and_hash_change_are_read_again(tmp_path: Path) -> None:
    from conn.state.backends.duckdb.connection import connect as open_db
    from conn.state.backends.duckdb.triggers import open_file

    path = tmp_path / "t.duckdb"
    con = open_db(path)
    con.execute("CREATE TABLE trigger_state (key VARCHAR PRIMARY KEY, armed BOOLEAN, "
                "value VARCHAR, fired_at DOUBLE, seq BIGINT)")
    con.execute("INSERT INTO trigger_state VALUES ('a', true, '60', NULL, 0), "
                "('b', false, '30', 5.0, 2)")
    con.close()
    store = open_file(tmp_path / "t")
    model = {"a": (True, "60", None, 0), "b": (False, "30", 5.0, 2)}
    _check(store, model)
    store.fold()
    # Ids hashed by another DuckDB release: the stored canary and ids differ.
    store._con.execute("UPDATE trigger_base SET kid = kid + 1")
    store._con.execute("UPDATE trigger_meta SET value = 'other' WHERE name = 'canary'")
    store.close()
    store = open_file(tmp_path / "t")
    try:
        _check(store, model)
    finally:
        store.close()

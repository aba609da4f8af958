"""Reading an edge stream (docs/profiles.md, "Records and identifiers"): a record is one
distinct combination of a row's normalised identifiers, and each record holds one entry
per distinct identifier it has. Rows repeating a record, blank or missing values and two
columns of one type holding the same identifier must give exactly that, against a plain
model over random rows."""

from __future__ import annotations

from pathlib import Path

import duckdb
from conn.config import load_project
from conn.config.profiles import profile_sets
from conn.plugins import Registry
from conn.profiles.edges import read_edges
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import examples

PROJECT = """\
version: 1
sources:
  wh: {type: duckdb, config: {path: w.duckdb}}
destinations: {}
syncs: {}
profiles:
  people:
    identifiers: {email: {}, device_id: {}}
    edges:
      app:
        source: wh
        stream: users
        identifiers: {mail: email, alt: email, device: device_id}
      web:
        source: wh
        stream: users
        identifiers: {mail: email, device: device_id}
"""

value = st.one_of(st.none(), st.sampled_from(["", " ", "a@x.io", "A@X.io ", "b@x.io"]))
device = st.one_of(st.none(), st.sampled_from(["d1", "d2", " d1"]))
rows_st = st.lists(st.tuples(value, value, device), max_size=25)


def _email(v: str | None) -> str | None:
    v = None if v is None else v.strip().lower()
    return v or None


def _device(v: str | None) -> str | None:
    v = None if v is None else v.strip()
    return v or None


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_st, repeated=st.lists(st.integers(0, 24), max_size=10))
def test_entries_are_each_records_distinct_identifiers(tmp_path: Path, rows: list,
                                                       repeated: list[int]) -> None:
    rows = rows + [rows[i % len(rows)] for i in repeated] if rows else rows
    db = tmp_path / "w.duckdb"
    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE users (mail VARCHAR, alt VARCHAR, device VARCHAR)")
    if rows:
        con.executemany("INSERT INTO users VALUES (?, ?, ?)", rows)
    con.close()
    (tmp_path / "conn.yml").write_text(PROJECT)
    project = load_project(tmp_path / "conn.yml", validate_plugins=False)
    data = read_edges(project, Registry(), profile_sets(project)["people"])
    got = data.entries.to_pylist()
    # No entry twice.
    assert len({(e["rkey"], e["ident"]) for e in got}) == len(got)
    records: dict[int, set[str]] = {}
    for e in got:
        records.setdefault(e["rkey"], set()).add(e["ident"])
    model = []
    for columns in ((0, 1, 2), (0, 2)):  # the columns of each edge: app, web
        records_of_edge = set()
        for row in rows:
            vals = tuple(_device(row[c]) if c == 2 else _email(row[c]) for c in columns)
            ids = frozenset(f"{'device_id' if c == 2 else 'email'}\x1f{v}"
                            for c, v in zip(columns, vals, strict=True) if v)
            if ids:
                records_of_edge.add((vals, ids))
        model += [sorted(ids) for _, ids in records_of_edge]
    # One record per distinct combination of an edge's identifiers (its columns kept
    # apart: a@ in ``mail`` and in ``alt`` are two records with the same identifiers).
    assert sorted(map(sorted, records.values())) == sorted(model)

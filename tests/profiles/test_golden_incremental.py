"""docs/profiles.md, "Incremental builds": an incremental build computes the golden
records of the profiles its changes touched only and changes the stored tables in place,
and leaves what a full build from the same state leaves. Random edits of a DuckDB
warehouse (rows added, removed, their identifiers or fields edited) between builds
through the real CLI; after each, the incremental build's ``profiles.people`` and stored
records, entries and digests are compared with a ``--full`` build's on a copy of the
project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from conn.plugins import Registry, reset_registry
from conn.profiles.store import ProfileStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_in_process import run_cli
from tests.conftest import examples

pytest.importorskip("conn_source_duckdb")

PROJECT = """\
version: 1
sources:
  warehouse: {type: duckdb, config: {path: warehouse.duckdb}}
destinations: {}
profiles:
  people:
    identifiers:
      customer_id: {limit: 1}
      email: {limit: 2}
      device_id: {}
    edges:
      app:
        source: warehouse
        stream: app_users
        identifiers: {mail: email, device: device_id}
        updated_at: seen_at
      crm:
        source: warehouse
        stream: contacts
        identifiers: {id: customer_id, email: email}
        updated_at: changed_at
    fields:
      name: {rule: source_priority, sources: [crm, app]}
      latest_name: {column: name, rule: most_recent}
      first_name: {column: name, rule: first_non_null}
      top: {column: score, rule: max}
      usual: {column: score, rule: most_frequent}
syncs: {}
"""

MAILS = st.none() | st.sampled_from(["a@x.io", "b@x.io", "c@x.io", "d@x.io"])
DEVICES = st.none() | st.sampled_from(["d1", "d2", "d3"])
NAMES = st.none() | st.sampled_from(["ann", "bob", "cy"])
SCORES = st.none() | st.integers(0, 3)
DAYS = st.integers(1, 4)
# A row of either table: (table, first identifier, second identifier, name, score, day)
app_row = st.tuples(st.just("app_users"), MAILS, DEVICES, NAMES, SCORES, DAYS)
crm_row = st.tuples(st.just("contacts"), st.none() | st.sampled_from(["c1", "c2", "c3"]),
                    MAILS, NAMES, SCORES, DAYS)
rows_st = st.lists(app_row | crm_row, min_size=1, max_size=12)
# An edit: ("add", row) | ("drop", index) | ("set", index, column, value)
edit_st = st.one_of(
    st.tuples(st.just("add"), app_row | crm_row),
    st.tuples(st.just("drop"), st.integers(0, 20)),
    st.tuples(st.just("set"), st.integers(0, 20), st.sampled_from([1, 2, 3, 4, 5]),
              st.integers(0, 3)))


def write(path: Path, rows: list[tuple]) -> None:
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute("CREATE OR REPLACE TABLE app_users (mail VARCHAR, device VARCHAR, "
                "name VARCHAR, score INT, seen_at TIMESTAMP)")
    con.execute("CREATE OR REPLACE TABLE contacts (id VARCHAR, email VARCHAR, "
                "name VARCHAR, score INT, changed_at TIMESTAMP)")
    for table, a, b, name, score, day in rows:
        con.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)",
                    [a, b, name, score, f"2026-01-0{day}"])
    con.close()


def edited(rows: list[tuple], edit: tuple) -> list[tuple]:
    rows = list(rows)
    if edit[0] == "add":
        rows.append(edit[1])
    elif rows and edit[0] == "drop":
        rows.pop(edit[1] % len(rows))
    elif rows:
        k, col, pick = edit[1] % len(rows), edit[2], edit[3]
        row = list(rows[k])
        pools = {1: ["c1", "c2", "a@x.io"] if row[0] == "contacts" else
                 ["a@x.io", "b@x.io", None], 2: ["a@x.io", "d2", "d3", None],
                 3: ["ann", "bob", None], 4: [0, 1, 2, None], 5: [1, 2, 3, 4]}
        pool = pools[col]
        row[col] = pool[pick % len(pool)]
        rows[k] = tuple(row)
    return rows


def golden(path: Path) -> list[dict]:
    st_ = ProfileStore(path / ".conn" / "profiles.duckdb", read_only=True)
    try:
        return st_.golden("people").to_pylist()
    finally:
        st_.close()


def stored(path: Path) -> dict[str, list[tuple]]:
    """The stored records (without their island numbers, which only need to be
    distinct), entries and digests, sorted."""
    con = duckdb.connect(str(path / ".conn" / "profiles.duckdb"), read_only=True)
    try:
        return {t: sorted(con.sql(f'SELECT {cols} FROM "people.{t}"').fetchall())
                for t, cols in (("records", "rkey, profile"), ("entries", "*"),
                                ("digests", "*"))}
    finally:
        con.close()


def build(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          path: Path, *flags: str) -> dict:
    monkeypatch.chdir(path)
    code, out, err = run_cli(monkeypatch, capsys, "profiles", "build", "--json", *flags)
    assert code == 0, out + err
    (b,) = json.loads(out)["builds"]
    return b


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_st, edits=st.lists(st.lists(edit_st, min_size=1, max_size=4),
                                    min_size=1, max_size=3))
def test_an_incremental_build_leaves_the_golden_records_of_a_full_one(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], rows: list[tuple],
        edits: list[list[tuple]]) -> None:
    base = tmp_path_factory.mktemp("incremental")
    (base / "conn.yml").write_text(PROJECT)
    reset_registry(Registry())
    try:
        write(base, rows)
        held = build(monkeypatch, capsys, base)["records"]
        for step in edits:
            for edit in step:
                rows = edited(rows, edit)
            write(base, rows)
            full = base.parent / (base.name + "-full")
            shutil.rmtree(full, ignore_errors=True)
            shutil.copytree(base, full)
            b = build(monkeypatch, capsys, base)
            assert not b["full"] or not held  # a build after one of no record is a first
            held = b["records"]
            f = build(monkeypatch, capsys, full, "--full")
            assert golden(base) == golden(full)
            assert stored(base) == stored(full)
            assert b["profiles"] == f["profiles"] == len(golden(full))
            assert b["golden_computed"] <= f["golden_computed"]
    finally:
        reset_registry(Registry(autoload=False))


def test_an_edited_field_recomputes_its_profile_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A field edited under the same identifiers re-stitches nothing, yet the profile's
    golden record follows the edit; the other profiles are not computed again."""
    (tmp_path / "conn.yml").write_text(PROJECT)
    reset_registry(Registry())
    try:
        rows = [("app_users", "a@x.io", "d1", "ann", 1, 1),
                ("app_users", "b@x.io", "d2", "bob", 2, 1),
                ("contacts", "c3", "c@x.io", "cy", 3, 1)]
        write(tmp_path, rows)
        assert build(monkeypatch, capsys, tmp_path)["golden_computed"] == 3
        write(tmp_path, [rows[0], ("app_users", "b@x.io", "d2", "bo", 2, 2), rows[2]])
        b = build(monkeypatch, capsys, tmp_path)
        assert (b["restitched"], b["golden_computed"], b["profiles"]) == (0, 1, 3)
        names = {g["email"]: g["latest_name"] for g in golden(tmp_path)}
        assert names == {"a@x.io": "ann", "b@x.io": "bo", "c@x.io": "cy"}
    finally:
        reset_registry(Registry(autoload=False))

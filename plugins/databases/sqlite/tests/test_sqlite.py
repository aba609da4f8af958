"""SQLite source and destination on real database files (no mocks)."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import threading

import pyarrow as pa
import pytest
from conn.errors import ConfigError
from conn.testing.harness import read_all, write_records
from conn_sqlite.destination import SqliteDestination
from conn_sqlite.source import SqliteSource


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "test.db")
    conn = sqlite3.connect(path, isolation_level=None)
    yield path, conn
    conn.close()


def test_type_matrix_round_trip(db, tmp_path):
    path, conn = db
    conn.execute("""CREATE TABLE wide (id INTEGER PRIMARY KEY, n DECIMAL(12,3), f REAL,
        b BOOLEAN, t TEXT, by BLOB, u UUID, j JSON, d DATE, tm TIME, ts TIMESTAMP,
        tstz TIMESTAMPTZ, big DECIMAL(30,5), untyped)""")
    conn.execute("""INSERT INTO wide VALUES
        (1, 12.345, 1.5, 1, 'héllo', x'00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
         '{"a": [1]}', '2024-02-29', '23:59:59.999999', '2024-01-02 03:04:05.123456',
         '2024-01-02T03:04:05Z', '1234567890.12345', 42),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (3, -0.001, -1e300, 0, '', x'', '', '[]', '0001-01-01', '00:00:00',
         '1970-01-01 00:00:00', '2262-04-11 23:47:16', '0', 'x')""")
    src = SqliteSource({"path": path})
    info = src.stream("wide")
    s = info.schema
    assert info.primary_key == ("id",)
    assert s.field("n").type == pa.decimal128(12, 3) and s.field("b").type == pa.bool_()
    assert s.field("tstz").type == pa.timestamp("us", "UTC")
    assert s.field("d").type == pa.date32() and s.field("tm").type == pa.time64("us")
    data, _ = read_all(src, "wide")
    r1 = {r["id"]: r for r in data.to_pylist()}[1]
    assert r1["n"] == decimal.Decimal("12.345") and r1["b"] is True
    assert r1["big"] == decimal.Decimal("1234567890.12345")
    assert r1["ts"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert r1["tstz"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert r1["tm"] == dt.time(23, 59, 59, 999999) and r1["untyped"] == "42"
    out = str(tmp_path / "out.db")
    d = SqliteDestination({"path": out, "create_table": True, "tables": {"wide": {"key": "id"}}})
    res = write_records(d, "wide", data)
    assert not res.rejected and not res.pending, res
    back, _ = read_all(SqliteSource({"path": out}), "wide")
    assert back.schema.types == data.schema.types
    assert back.sort_by("id").to_pylist() == data.sort_by("id").to_pylist()


def test_incremental_reads(db):
    path, conn = db
    conn.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, ts TIMESTAMP)")
    conn.executemany("INSERT INTO ev VALUES (?, ?)",
                     [(i, f"2024-01-01 {i // 2:02d}:00:00") for i in range(20)])
    src = SqliteSource({"path": path, "streams": {"ev": {"cursor": "ts"}}})
    data, states = read_all(src, "ev", batch_rows=3)
    assert data.num_rows == 20 and states[-1] == "2024-01-01 09:00:00"
    for st in states:  # resuming from any bookmark reads exactly the later rows
        rest, _ = read_all(src, "ev", state=st)
        assert rest.num_rows == sum(1 for r in data.to_pylist() if str(r["ts"]) > st)
    conn.execute("INSERT INTO ev VALUES (100, '2024-02-01 00:00:00')")
    new, st2 = read_all(src, "ev", state=states[-1])
    assert new.column("id").to_pylist() == [100] and st2 == ["2024-02-01 00:00:00"]


def test_upsert_update_insert_delete_and_rejections(db):
    path, conn = db
    conn.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "age INTEGER CHECK (age >= 0))")
    d = SqliteDestination({"path": path, "batch_size": 4})
    rows = [{"id": i, "name": f"n{i}", "age": i} for i in range(10)]
    assert write_records(d, "c", rows) == write_records(d, "c", rows)
    res = write_records(d, "c", [{"id": 1, "name": "x", "age": -5},
                                 {"id": 2, "name": None, "age": 1},
                                 {"id": 3, "name": "three", "age": 3}])
    assert [r.index for r in res.rejected] == [0, 1]
    assert "CHECK" in res.rejected[0].reason and "NOT NULL" in res.rejected[1].reason
    assert conn.execute("SELECT name FROM c WHERE id IN (1, 3) ORDER BY id").fetchall() == \
        [("n1",), ("three",)]
    res = write_records(d, "c", [{"id": 4, "name": "u", "age": 1},
                                 {"id": 77, "name": "u", "age": 1}], operation="update")
    assert [r.index for r in res.rejected] == [1]
    res = write_records(d, "c", [{"id": 5, "name": "dup", "age": 1}], operation="insert")
    assert res.rejected and "UNIQUE" in res.rejected[0].reason
    write_records(d, "c", [{"id": 0}, {"id": 9}, {"id": 404}], operation="delete")
    assert conn.execute("SELECT count(*) FROM c").fetchone() == (8,)


def test_schema_mismatch_and_evolve(db):
    path, conn = db
    conn.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, name TEXT)")
    res = write_records(SqliteDestination({"path": path}), "c",
                        [{"id": 1, "name": "a", "extra": 2.5}])
    assert isinstance(res.error, ConfigError) and "evolve: true" in str(res.error)
    res = write_records(SqliteDestination({"path": path, "evolve": True}), "c",
                        [{"id": 1, "name": "a", "extra": 2.5}])
    assert not res.pending
    assert conn.execute("SELECT extra FROM c").fetchall() == [(2.5,)]


def test_injection_attempts_are_inert(db):
    path, conn = db
    conn.execute("CREATE TABLE victim (id INTEGER)")
    conn.execute("INSERT INTO victim VALUES (1)")
    table = 'x"; DROP TABLE victim; --'
    col = "a'); DELETE FROM victim; --"
    d = SqliteDestination({"path": path, "tables": {table: {"key": "id", "create_table": True}}})
    res = write_records(d, table, [{"id": 1, col: "'); DROP TABLE victim; --"}])
    assert not res.rejected and not res.pending
    src = SqliteSource({"path": path, "streams": {table: {"cursor": col}}})
    data, _ = read_all(src, table)
    assert data.column(col).to_pylist() == ["'); DROP TABLE victim; --"]
    again, _ = read_all(src, table, state="' OR 1=1 --")
    assert again.num_rows == 1  # a bound value: compared, never executed
    assert conn.execute("SELECT count(*) FROM victim").fetchone() == (1,)


def test_locked_database_leaves_nothing_half_written(db):
    path, conn = db
    conn.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, v TEXT)")
    d = SqliteDestination({"path": path, "timeout": 0.2})
    conn.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    res = write_records(d, "c", [{"id": i, "v": "x"} for i in range(100)])
    conn.execute("ROLLBACK")
    assert len(res.pending) == 100 and res.error is not None
    assert conn.execute("SELECT count(*) FROM c").fetchone() == (0,)
    t = threading.Thread(target=lambda: write_records(d, "c", [{"id": 1, "v": "y"}]))
    t.start()
    t.join()
    assert conn.execute("SELECT count(*) FROM c").fetchone() == (1,)


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_erase_leaves_no_trace_in_the_database_files(tmp_path, journal):
    """``erase`` deletes every row with the key (an append table may hold several) and
    leaves none of their bytes in the database file or its WAL: SQLite's free pages keep
    deleted content unless secure_delete is on. A ``delete`` is not that strict, which
    is what the control row shows; unknown keys and a second erase are acknowledged."""
    path = tmp_path / "erase.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.execute("CREATE TABLE events (id TEXT, who TEXT, note TEXT)")
    conn.close()
    d = SqliteDestination({"path": str(path), "tables": {"events": {"key": "who"}}})
    secret = "ERASE-ME-7f3a9c" * 20
    rows = [{"id": f"e{i}", "who": "ada" if i % 2 else "bob",
             "note": f"{secret}-{i}" if i % 2 else f"kept-{i}"} for i in range(40)]
    assert not write_records(d, "events", rows, operation="append").rejected
    assert "erase" in d.object("events").capabilities.operations()
    keys = [{"who": "ada"}, {"who": "never-written"}]
    for _ in range(2):
        res = write_records(d, "events", keys, operation="erase")
        assert not res.rejected and not res.pending and res.error is None
    d.close()
    back = sqlite3.connect(path)
    assert back.execute("SELECT DISTINCT who FROM events").fetchall() == [("bob",)]
    back.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("erase.db")]
    assert all(b"ERASE-ME-7f3a9c" not in p.read_bytes() for p in files), \
        [p.name for p in files]

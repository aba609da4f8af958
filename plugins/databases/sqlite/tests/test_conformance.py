"""conn's conformance suites for the ``sqlite`` source and destination
(conn.testing.conformance)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite, source_suite
from conn_sqlite.destination import SqliteDestination
from conn_sqlite.source import SqliteSource

ROWS = 1_000


_BUILT: dict[str, Path] = {}


def source_db(ctx: SuiteContext) -> Path:
    """``people`` (1,000 rows, cursor ``updated_at``) and ``big`` (100,000 rows, for the
    memory check), created once per session (the source only reads it)."""
    if "source" in _BUILT:
        return _BUILT["source"]
    path = ctx.fixture("tmp_path_factory").mktemp("sqlite-source") / "source.db"
    _BUILT["source"] = path
    if not path.exists():
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT NOT NULL, "
                    "name TEXT, updated_at TEXT NOT NULL)")
        con.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", [
            (i, f"person{i}@example.com", None if i % 7 == 0 else f"Zoë 東京 {i}",
             f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}") for i in range(ROWS)])
        con.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, label TEXT)")
        con.executemany("INSERT INTO big VALUES (?, ?)",
                        ((i, f"{'x' * 40}{i}") for i in range(100_000)))
        con.commit()
        con.close()
    return path


TestSqliteSourceConformance = source_suite(
    SqliteSource,
    config=lambda ctx: {"path": str(source_db(ctx)),
                        "streams": {"people": {"cursor": "updated_at"}}},
    stream="people",
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(ROWS)],
    bad_config={"path": 5, "timeout": -1},
    failing_config=lambda ctx: {"path": str(ctx.tmp_path / "missing.db")},
    batch_rows=100,
    memory_stream="big",
)


def dest_db(ctx: SuiteContext) -> Path:
    """A database with a ``contacts`` table whose CHECK refuses e-mails without '@'
    (nullable columns but the key: the object schema the plugin derives from the table
    does not carry NOT NULL as ``required``)."""
    path = ctx.tmp_path / "dest.db"
    if not path.exists():
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE contacts (id TEXT PRIMARY KEY, "
                    "email TEXT CHECK (email LIKE '%@%'), name TEXT, ltv REAL)")
        con.commit()
        con.close()
    return path


def read_back(ctx: SuiteContext, dest: Any, obj: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(dest_db(ctx))
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT * FROM {obj}")]
    finally:
        con.close()


SAMPLES = [
    {"id": "c-1", "email": "ana@example.com", "name": "Ana Müller", "ltv": 10.5},
    {"id": "c-2", "email": "bo@example.com", "name": "Bo", "ltv": 0.0},
]

TestSqliteDestinationConformance = destination_suite(
    SqliteDestination,
    config=lambda ctx: {"path": str(dest_db(ctx)), "batch_size": 500},
    object="contacts",
    sample_records=SAMPLES,
    rejected_record={"id": "c-bad", "email": "not-an-email", "name": "x", "ltv": 1.0},
    bad_config={"path": 5, "batch_size": 0},
    failing_config=lambda ctx: {"path": str(ctx.tmp_path / "no" / "such" / "dir" / "x.db")},
    read_back=read_back,
    text_fields=["name"],
)

"""Versioned schema of the embedded (DuckDB) state files, with migrations.

Every state file carries a ``meta`` table: ``app_id`` (``conn-state``), ``format_version``,
``kind`` (``sync`` or ``runs``), the sync's name and the hash canary. Opening a file checks
them: another application's file, a file from a newer conn or an unreadable file raises
:class:`~conn.errors.StateError`; an older format is migrated in one transaction.

History:
  1. ``records`` written in place by each commit; no partition column.
  2. ``partition`` on records and rejections; commits append to a ``changes`` log that is
     folded into ``records`` at the end of each run (fast, crash-safe commits), which
     also rewrites ``kid_index`` (key id, hash, partition; sorted by key id) so that the
     next run reads its planning state in order, without sorting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
from conn.errors import StateError

APP_ID = "conn-state"
FORMAT_VERSION = 2

#: The change log (also re-created by the DuckDB store's compaction).
CHANGES_TABLE = """CREATE TABLE changes (seq BIGINT NOT NULL, op TINYINT NOT NULL,
  kid UBIGINT NOT NULL, key VARCHAR NOT NULL, hash UBIGINT, match_value VARCHAR,
  partition USMALLINT NOT NULL, run_id VARCHAR, changed_at TIMESTAMP)"""

SYNC_TABLES_V2 = """
CREATE TABLE records (kid UBIGINT NOT NULL, key VARCHAR NOT NULL, hash UBIGINT,
  match_value VARCHAR, partition USMALLINT NOT NULL, run_id VARCHAR, acked_at TIMESTAMP);
CREATE TABLE kid_index (kid UBIGINT NOT NULL, hash UBIGINT NOT NULL,
  partition USMALLINT NOT NULL);
{changes};
CREATE TABLE rejections (kid UBIGINT NOT NULL, key VARCHAR, partition USMALLINT NOT NULL,
  reason VARCHAR, op VARCHAR, run_id VARCHAR, rejected_at TIMESTAMP);
CREATE TABLE progress (run_id VARCHAR PRIMARY KEY, started_at TIMESTAMP,
  updated_at TIMESTAMP, batches BIGINT DEFAULT 0, acknowledged BIGINT DEFAULT 0,
  rejected BIGINT DEFAULT 0, deleted BIGINT DEFAULT 0);
CREATE TABLE source_state (id INTEGER PRIMARY KEY, value VARCHAR, run_id VARCHAR,
  saved_at TIMESTAMP);
""".replace("{changes}", CHANGES_TABLE)

#: The version-1 layout, kept to test the migration (never created by this conn).
SYNC_TABLES_V1 = """
CREATE TABLE records (kid UBIGINT NOT NULL, key VARCHAR NOT NULL, hash UBIGINT,
  match_value VARCHAR, run_id VARCHAR, acked_at TIMESTAMP);
CREATE TABLE rejections (kid UBIGINT NOT NULL, key VARCHAR, reason VARCHAR, op VARCHAR,
  run_id VARCHAR, rejected_at TIMESTAMP);
CREATE TABLE progress (run_id VARCHAR PRIMARY KEY, started_at TIMESTAMP,
  updated_at TIMESTAMP, batches BIGINT DEFAULT 0, acknowledged BIGINT DEFAULT 0,
  rejected BIGINT DEFAULT 0, deleted BIGINT DEFAULT 0);
CREATE TABLE source_state (id INTEGER PRIMARY KEY, value VARCHAR, run_id VARCHAR,
  saved_at TIMESTAMP);
"""

RUNS_TABLES = """
CREATE TABLE runs (sync VARCHAR, run_id VARCHAR, status VARCHAR, started_at DOUBLE,
  seconds DOUBLE, rows_read BIGINT, inserted BIGINT, updated BIGINT, deleted BIGINT,
  unchanged BIGINT, rejected BIGINT, pending BIGINT, recorded_at DOUBLE, report VARCHAR);
"""


def _v1_to_v2(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE records ADD COLUMN partition USMALLINT")
    con.execute("UPDATE records SET partition = (kid >> 56)::USMALLINT")
    con.execute("ALTER TABLE rejections ADD COLUMN partition USMALLINT")
    con.execute("UPDATE rejections SET partition = (kid >> 56)::USMALLINT")
    con.execute(CHANGES_TABLE)
    con.execute("""CREATE TABLE kid_index AS SELECT kid, coalesce(hash, 0) AS hash,
      partition FROM records ORDER BY kid""")


#: ``MIGRATIONS[v]`` turns a version-``v`` sync file into version ``v + 1``.
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {1: _v1_to_v2}


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = 'main'").fetchall()
    return {r[0] for r in rows}


def read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The meta table as a dict."""
    return dict(con.execute("SELECT key, value FROM meta").fetchall())


def write_meta(con: duckdb.DuckDBPyConnection, values: dict[str, Any]) -> None:
    """Insert or replace meta entries."""
    for k, v in values.items():
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [k, str(v)])


def prepare(con: duckdb.DuckDBPyConnection, path: str, *, kind: str,
            identity: dict[str, str], read_only: bool = False) -> dict[str, str]:
    """Create, check or migrate a state file; return its meta. ``identity`` holds meta
    entries that must match (e.g. the sync's name) and that a new file is given."""
    tables = _tables(con)
    if not tables:
        if read_only:
            return {}
        con.begin()
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute(SYNC_TABLES_V2 if kind == "sync" else RUNS_TABLES)
        write_meta(con, {"app_id": APP_ID, "format_version": FORMAT_VERSION, "kind": kind,
                         **identity})
        con.commit()
        return read_meta(con)
    if "meta" not in tables:
        raise StateError(f"{path} is not a conn state file (no meta table; tables: "
                         f"{', '.join(sorted(tables))}). Move it away or point state.url "
                         "elsewhere; conn never overwrites it.")
    meta = read_meta(con)
    if meta.get("app_id") != APP_ID or meta.get("kind") != kind:
        raise StateError(f"{path} belongs to another application or purpose (app_id "
                         f"{meta.get('app_id')!r}, kind {meta.get('kind')!r}); conn will "
                         "not use or overwrite it.")
    for k, v in identity.items():
        if meta.get(k) != v:
            raise StateError(f"{path} holds state for {k} {meta.get(k)!r}, not {v!r}; was "
                             "the file copied or renamed?")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise StateError(f"{path}: unreadable format_version "
                         f"{meta.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise StateError(f"{path} was written by a newer conn (state format {version}, "
                         f"this conn reads up to {FORMAT_VERSION}); upgrade conn.")
    if version < FORMAT_VERSION:
        if read_only:
            raise StateError(f"{path} uses state format {version}; run a sync once to "
                             f"migrate it to format {FORMAT_VERSION}.")
        con.begin()
        try:
            while version < FORMAT_VERSION:
                if kind != "sync" or version not in MIGRATIONS:
                    raise StateError(f"{path}: no migration from state format {version}")
                MIGRATIONS[version](con)
                version += 1
            write_meta(con, {"format_version": version})
            con.commit()
        except BaseException:
            con.rollback()
            raise
        meta = read_meta(con)
    return meta

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
  3. A lean change log: what is the same for every row of a commit (operation, run,
     time, whether the match value is the key) moves to a ``commits`` table, and
     ``changes`` and ``records`` hold ``seq, kid, key, hash, match_value`` only, with
     ``match_value`` NULL when the commit says it equals the key. Each commit writes
     about half the bytes to DuckDB's WAL (700,000 rows: 0.65 -> 0.3 s). The view
     ``acknowledged`` shows records with every column resolved. ``kid_index`` is gone:
     the planner's sorted state is cached in ``.npy`` files next to the state file
     (see :mod:`conn.state.backends.duckdb.sorted_cache`) and rebuilt from ``records``
     when missing.
  4. Typed match values and listed rejections: ``commits.match_type`` names the Arrow
     type of the commit's match values (:mod:`conn.state.typed_text`; NULL for values
     stored as text by earlier formats), so deletes send them back with that type;
     ``rejections`` gain ``since`` (first rejection of the key in a row of attempts) and
     ``attempts``. The sync's target identity is kept in ``meta`` (``target``).
     Later, without a format change: ``first_acked`` (key id, commit) keeps the
     commit that first delivered a key whose record a later commit replaced (a record
     not listed there was first delivered by its own commit), for access reports. A
     writable open creates the table when missing; a conn that does not know it leaves
     it alone, and a read falls back to the record's own commit without it.
  5. Privacy operations (``conn forget``, docs/privacy.md): the run-history file gains
     ``privacy_salt`` (the project's random HMAC key), ``suppression`` (HMAC digests of
     forgotten people's identifiers), ``erasures_pending`` (match values a destination
     has not yet confirmed erasing) and ``ledger`` (the hash-chained receipts). Sync
     files are unchanged.
  6. ``rejections`` gain ``excerpt``: JSON text of the vendor exchange that rejected the
     row (method, URL path, status, the row's part of the request and the start of the
     response, secrets masked; :mod:`conn.http.exchange`), NULL when there was none.
     The run-history file is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb

from conn.errors import StateError

APP_ID = "conn-state"
FORMAT_VERSION = 6

#: ``changes`` and ``records`` share this layout (a first sync's log becomes ``records``
#: by a rename); the change log is re-created by the DuckDB store's compaction.
_LOG_COLUMNS = """(seq BIGINT NOT NULL, kid UBIGINT NOT NULL, key VARCHAR NOT NULL,
  hash UBIGINT, match_value VARCHAR)"""
CHANGES_TABLE = f"CREATE TABLE changes {_LOG_COLUMNS}"

#: One row per commit: operation (1 upsert, 2 delete), run, time, and whether the commit's
#: match values are its keys (stored as NULL in ``changes`` / ``records``).
COMMITS_TABLE = """CREATE TABLE commits (seq BIGINT NOT NULL, op TINYINT NOT NULL,
  run_id VARCHAR, committed_at TIMESTAMP, mv_is_key BOOLEAN NOT NULL, match_type VARCHAR)"""
#: The version-3 commits table, kept for the migrations.
COMMITS_TABLE_V3 = """CREATE TABLE commits (seq BIGINT NOT NULL, op TINYINT NOT NULL,
  run_id VARCHAR, committed_at TIMESTAMP, mv_is_key BOOLEAN NOT NULL)"""

#: Records with every column resolved (for people and tools reading the state file).
ACKNOWLEDGED_VIEW = """CREATE OR REPLACE VIEW acknowledged AS SELECT r.kid, r.key, r.hash,
  CASE WHEN c.mv_is_key THEN r.key ELSE r.match_value END AS match_value, c.match_type,
  (r.kid >> 56)::USMALLINT AS partition, c.run_id, c.committed_at AS acked_at
  FROM records r JOIN commits c USING (seq)"""
#: The version-3 view, kept for the migrations.
ACKNOWLEDGED_VIEW_V3 = """CREATE OR REPLACE VIEW acknowledged AS SELECT r.kid, r.key,
  r.hash, CASE WHEN c.mv_is_key THEN r.key ELSE r.match_value END AS match_value,
  (r.kid >> 56)::USMALLINT AS partition, c.run_id, c.committed_at AS acked_at
  FROM records r JOIN commits c USING (seq)"""

#: Run progress and the source bookmark (unchanged since format 2).
_PROGRESS_TABLES = """CREATE TABLE progress (run_id VARCHAR PRIMARY KEY,
  started_at TIMESTAMP, updated_at TIMESTAMP, batches BIGINT DEFAULT 0,
  acknowledged BIGINT DEFAULT 0, rejected BIGINT DEFAULT 0, deleted BIGINT DEFAULT 0);
CREATE TABLE source_state (id INTEGER PRIMARY KEY, value VARCHAR, run_id VARCHAR,
  saved_at TIMESTAMP);"""
#: Rejections: ``since`` is the first rejection of a key rejected run after run,
#: ``attempts`` how many runs it was rejected in a row.
#: ``excerpt``: the vendor exchange that rejected the row (format 6).
_REJECTIONS = """CREATE TABLE rejections (kid UBIGINT NOT NULL, key VARCHAR,
  partition USMALLINT NOT NULL, reason VARCHAR, op VARCHAR, run_id VARCHAR,
  rejected_at TIMESTAMP, since TIMESTAMP, attempts INTEGER, excerpt VARCHAR);"""
#: Rejections of formats 2 and 3, kept for the migrations.
_REJECTIONS_V3 = """CREATE TABLE rejections (kid UBIGINT NOT NULL, key VARCHAR,
  partition USMALLINT NOT NULL, reason VARCHAR, op VARCHAR, run_id VARCHAR,
  rejected_at TIMESTAMP);"""
_RUN_TABLES = f"{_REJECTIONS}\n{_PROGRESS_TABLES}"
_RUN_TABLES_V3 = f"{_REJECTIONS_V3}\n{_PROGRESS_TABLES}"

#: Since when a key has been delivered: see the module's history (format 4, later).
FIRST_ACKED_TABLE = "CREATE TABLE IF NOT EXISTS first_acked (kid UBIGINT NOT NULL, seq BIGINT)"

SYNC_TABLES = f"""
CREATE TABLE records {_LOG_COLUMNS};
{FIRST_ACKED_TABLE};
{CHANGES_TABLE};
{COMMITS_TABLE};
{_RUN_TABLES}
{ACKNOWLEDGED_VIEW};
"""

#: The version-3 layout, kept to test the migration (never created by this conn).
SYNC_TABLES_V3 = f"""
CREATE TABLE records {_LOG_COLUMNS};
{CHANGES_TABLE};
{COMMITS_TABLE_V3};
{_RUN_TABLES_V3}
{ACKNOWLEDGED_VIEW_V3};
"""

#: The version-2 change log, kept for the migrations.
CHANGES_TABLE_V2 = """CREATE TABLE changes (seq BIGINT NOT NULL, op TINYINT NOT NULL,
  kid UBIGINT NOT NULL, key VARCHAR NOT NULL, hash UBIGINT, match_value VARCHAR,
  partition USMALLINT NOT NULL, run_id VARCHAR, changed_at TIMESTAMP)"""

#: The version-2 layout, kept to test the migration (never created by this conn).
SYNC_TABLES_V2 = f"""
CREATE TABLE records (kid UBIGINT NOT NULL, key VARCHAR NOT NULL, hash UBIGINT,
  match_value VARCHAR, partition USMALLINT NOT NULL, run_id VARCHAR, acked_at TIMESTAMP);
CREATE TABLE kid_index (kid UBIGINT NOT NULL, hash UBIGINT NOT NULL,
  partition USMALLINT NOT NULL);
{CHANGES_TABLE_V2};
{_RUN_TABLES_V3}
"""

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

#: The project-wide privacy tables (format 5), in the run-history file.
PRIVACY_TABLES = """
CREATE TABLE IF NOT EXISTS privacy_salt (id INTEGER PRIMARY KEY, salt BLOB NOT NULL,
  created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS suppression (digest VARCHAR PRIMARY KEY, receipt_id VARCHAR,
  added_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS erasures_pending (id VARCHAR PRIMARY KEY, receipt_id VARCHAR,
  target INTEGER, sync VARCHAR, match_value VARCHAR, match_type VARCHAR,
  key_digest VARCHAR, hash UBIGINT, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS ledger (seq BIGINT PRIMARY KEY, receipt_id VARCHAR NOT NULL,
  body VARCHAR NOT NULL, prev VARCHAR NOT NULL, hash VARCHAR NOT NULL);
"""

#: The run-history file of formats 1 to 4, kept to test the migration.
RUNS_TABLES_V4 = """
CREATE TABLE runs (sync VARCHAR, run_id VARCHAR, status VARCHAR, started_at DOUBLE,
  seconds DOUBLE, rows_read BIGINT, inserted BIGINT, updated BIGINT, deleted BIGINT,
  unchanged BIGINT, rejected BIGINT, pending BIGINT, recorded_at DOUBLE, report VARCHAR);
"""
RUNS_TABLES = RUNS_TABLES_V4 + PRIVACY_TABLES


def _v1_to_v2(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE records ADD COLUMN partition USMALLINT")
    con.execute("UPDATE records SET partition = (kid >> 56)::USMALLINT")
    con.execute("ALTER TABLE rejections ADD COLUMN partition USMALLINT")
    con.execute("UPDATE rejections SET partition = (kid >> 56)::USMALLINT")
    con.execute(CHANGES_TABLE_V2)
    con.execute("""CREATE TABLE kid_index AS SELECT kid, coalesce(hash, 0) AS hash,
      partition FROM records ORDER BY kid""")


def _v2_to_v3(con: duckdb.DuckDBPyConnection) -> None:
    # Version-2 sequence numbers restart at 1 each run and the log is folded at every
    # open, so the rows left in it (a run that crashed) belong to one run: they keep
    # their numbers; the records already folded share commit 0.
    con.execute(COMMITS_TABLE_V3)
    con.execute("""INSERT INTO commits SELECT 0, 1, 'format-2 records', max(acked_at),
      false FROM records""")
    con.execute("""INSERT INTO commits SELECT seq, any_value(op), any_value(run_id),
      max(changed_at), false FROM changes GROUP BY seq""")
    con.execute(f"CREATE TABLE records_v3 {_LOG_COLUMNS}")
    con.execute("""INSERT INTO records_v3 SELECT 0, kid, key, hash, match_value
      FROM records""")
    con.execute("DROP TABLE records")
    con.execute("ALTER TABLE records_v3 RENAME TO records")
    con.execute(f"CREATE TABLE changes_v3 {_LOG_COLUMNS}")
    con.execute("""INSERT INTO changes_v3 SELECT seq, kid, key, hash, match_value
      FROM changes""")
    con.execute("DROP TABLE changes")
    con.execute("ALTER TABLE changes_v3 RENAME TO changes")
    con.execute("DROP TABLE kid_index")
    con.execute(ACKNOWLEDGED_VIEW_V3)


def _v3_to_v4(con: duckdb.DuckDBPyConnection) -> None:
    # Match values stored so far are text without a type (NULL match_type: the planner
    # reads them with the sync's current match field type where they parse as it).
    con.execute("ALTER TABLE commits ADD COLUMN match_type VARCHAR")
    con.execute("ALTER TABLE rejections ADD COLUMN since TIMESTAMP")
    con.execute("ALTER TABLE rejections ADD COLUMN attempts INTEGER")
    con.execute("UPDATE rejections SET since = rejected_at, attempts = 1")
    con.execute(ACKNOWLEDGED_VIEW)


def _runs_v4_to_v5(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(PRIVACY_TABLES)


def _v5_to_v6(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE rejections ADD COLUMN excerpt VARCHAR")


def _unchanged(con: duckdb.DuckDBPyConnection) -> None:
    """A format step that does not touch this kind of file."""


#: ``MIGRATIONS[kind][v]`` turns a version-``v`` file of that kind into version ``v + 1``.
#: The run-history file shares the format number; its tables changed in format 5.
MIGRATIONS: dict[str, dict[int, Callable[[duckdb.DuckDBPyConnection], None]]] = {
    "sync": {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _unchanged, 5: _v5_to_v6},
    "runs": {1: _unchanged, 2: _unchanged, 3: _unchanged, 4: _runs_v4_to_v5,
             5: _unchanged},
}


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Tables and views of the file (the catalog functions: the first query of
    ``information_schema`` in a process costs ~10 ms, a sync's whole open ~80 ms)."""
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                       "AND database_name = current_database() UNION ALL SELECT view_name "
                       "FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal "
                       "AND database_name = current_database()").fetchall()
    return {r[0] for r in rows}


def read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The meta table as a dict."""
    return dict(con.execute("SELECT key, value FROM meta").fetchall())


def write_meta(con: duckdb.DuckDBPyConnection, values: dict[str, Any]) -> None:
    """Insert or replace meta entries."""
    for k, v in values.items():
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [k, str(v)])


def prepare(con: duckdb.DuckDBPyConnection, path: str, *, kind: str,
            identity: dict[str, str], read_only: bool = False,
            readable_from: int = FORMAT_VERSION) -> dict[str, str]:
    """Create, check or migrate a state file; return its meta. ``identity`` holds meta
    entries that must match (e.g. the sync's name) and that a new file is given.
    ``read_only`` opens never migrate; they accept an older format from
    ``readable_from`` on (for readers of tables that format already had)."""
    tables = table_names(con)
    if not tables:
        if read_only:
            return {}
        con.begin()
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute(SYNC_TABLES if kind == "sync" else RUNS_TABLES)
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
        if read_only and version >= readable_from:
            return meta
        if read_only:
            raise StateError(f"{path} uses state format {version}; run a sync once to "
                             f"migrate it to format {FORMAT_VERSION}.")
        con.begin()
        try:
            while version < FORMAT_VERSION:
                step = MIGRATIONS.get(kind, {}).get(version)
                if step is None:
                    raise StateError(f"{path}: no migration from state format {version}")
                step(con)
                version += 1
            write_meta(con, {"format_version": version})
            con.commit()
        except BaseException:
            con.rollback()
            raise
        meta = read_meta(con)
    if kind == "sync" and not read_only and "first_acked" not in tables:
        con.execute(FIRST_ACKED_TABLE)
    return meta

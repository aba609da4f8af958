"""A trigger's entries in a DuckDB database (:class:`conn.state.triggers.TriggerStore`):
a file next to the sync's state for the embedded backend, an in-memory database for
the memory backend.

Two tables: ``trigger_base`` (one entry per key, written sorted by key id) and
``trigger_log``, to which each batch's commit appends only its changed entries, with a
growing ``gen`` (a later one wins). Appending to a table without an index costs a
fraction of an in-place upsert (16 commits of 640 entries into a 1M-entry table:
0.08 s appended, 1.0 s upserted on the text key). A run reads the base in stored order
(already sorted) and the log reduced to each key's latest entry. When the log has grown
past a quarter of the base, the read first folds it into a new sorted base (the cost of
rewriting every entry, paid once per that many changes).

Key ids are DuckDB's ``hash(key)``. The store keeps the canary of the hash function
(:func:`conn.state.planner.row_hashes.canary`); when DuckDB's hash changed, the ids are
recomputed from the stored keys on open (nothing else depends on them).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from conn.state.triggers import SCHEMA, STORED, TriggerStore

if TYPE_CHECKING:
    import duckdb

_COLUMNS = ("kid UBIGINT, key VARCHAR, armed BOOLEAN, value VARCHAR, fired_at DOUBLE, "
            "seq BIGINT")
_NAMES = ", ".join(SCHEMA.names)
#: The log is folded into the base when it holds more than this share of its entries...
FOLD_SHARE = 0.25
#: ... and at least this many (a small log costs nothing to read).
FOLD_MIN = 10_000
_LATEST = (f"SELECT {_NAMES} FROM trigger_log "
           "QUALIFY row_number() OVER (PARTITION BY kid, key ORDER BY gen DESC) = 1")


class DuckDBTriggerStore(TriggerStore):
    """One trigger's entries for one sync, in DuckDB (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None = None) -> None:
        self._con = con
        #: The file holding the tables (None in memory): rewritten after a forget.
        self._path = path
        self._lock = threading.Lock()
        con.execute(f"CREATE TABLE IF NOT EXISTS trigger_base ({_COLUMNS})")
        con.execute(f"CREATE TABLE IF NOT EXISTS trigger_log ({_COLUMNS}, gen BIGINT)")
        con.execute("CREATE TABLE IF NOT EXISTS trigger_meta (name VARCHAR PRIMARY KEY, "
                    "value VARCHAR)")
        self._upgrade()
        rows = con.execute("SELECT coalesce(max(gen), 0) FROM trigger_log").fetchall()
        self._gen = int(rows[0][0])

    def _upgrade(self) -> None:
        """Entries of an earlier layout (one table by key text) move to the log, and
        ids hashed by another DuckDB release are recomputed."""
        from conn.state.planner.row_hashes import canary

        con = self._con
        old = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = "
                          "'trigger_state'").fetchall()
        if old[0][0]:
            con.execute("INSERT INTO trigger_log SELECT hash(key), key, armed, value, "
                        "fired_at, seq, 0 FROM trigger_state")
            con.execute("DROP TABLE trigger_state")
        now = canary(con)
        rows = con.execute("SELECT value FROM trigger_meta WHERE name = 'canary'").fetchall()
        row = rows[0] if rows else None
        if row is not None and row[0] != now:
            for table in ("trigger_base", "trigger_log"):
                con.execute(f"UPDATE {table} SET kid = hash(key)")
            self.fold()
        if row is None or row[0] != now:
            con.execute("INSERT OR REPLACE INTO trigger_meta VALUES ('canary', ?)", [now])

    def load(self, keys: pa.Array, kids: np.ndarray) -> pa.Table:
        cur = self._con.cursor()
        try:
            asked = pa.table({"kid": pa.array(kids, pa.uint64()), "key": keys,
                              "pos": pa.array(np.arange(len(keys), dtype=np.int64))})
            cur.register("asked", asked)
            out = cur.sql(
                "WITH hit AS (SELECT a.pos, s.*, -1 AS gen FROM asked a JOIN trigger_base s "
                "USING (kid, key) UNION ALL SELECT a.pos, l.* FROM asked a JOIN trigger_log "
                "l USING (kid, key)), last AS (SELECT * FROM hit QUALIFY row_number() OVER "
                "(PARTITION BY pos ORDER BY gen DESC) = 1) "
                "SELECT l.pos IS NOT NULL AS known, l.armed, l.value, l.fired_at, l.seq "
                "FROM asked a LEFT JOIN last l USING (pos) ORDER BY a.pos").to_arrow_table()
            return out.cast(STORED)
        finally:
            cur.close()

    def commit(self, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        with self._lock:
            self._gen += 1
            cur = self._con.cursor()
            try:
                cur.register("new_rows", rows.select(SCHEMA.names).cast(SCHEMA))
                cur.execute(f"INSERT INTO trigger_log SELECT {_NAMES}, {self._gen} "
                            "FROM new_rows")
            finally:
                cur.close()

    def entries(self) -> pa.Table:
        cur = self._con.cursor()
        try:
            return cur.sql(
                f"SELECT {_NAMES} FROM (SELECT *, -1 AS gen FROM trigger_base UNION ALL "
                "SELECT * FROM trigger_log) QUALIFY row_number() OVER (PARTITION BY kid, "
                "key ORDER BY gen DESC) = 1").to_arrow_table().cast(SCHEMA)
        finally:
            cur.close()

    def layers(self) -> list[pa.Table]:
        """The base in stored order (sorted by id) and the log's latest entries."""
        cur = self._con.cursor()
        try:
            row = cur.execute("SELECT (SELECT count(*) FROM trigger_base), "
                              "(SELECT count(*) FROM trigger_log)").fetchall()[0]
            base, log = int(row[0]), int(row[1])
            if log > max(FOLD_MIN, FOLD_SHARE * base):
                self.fold()
                log = 0
            out = [cur.sql(f"SELECT {_NAMES} FROM trigger_base").to_arrow_table()]
            if log:
                out.append(cur.sql(f"{_LATEST} ORDER BY kid").to_arrow_table())
            return [t.cast(SCHEMA) for t in out]
        finally:
            cur.close()

    def fold(self) -> None:
        """Fold the log into a new base sorted by key id (one transaction)."""
        with self._lock:
            cur = self._con.cursor()
            try:
                cur.execute("BEGIN")
                cur.execute(
                    f"CREATE OR REPLACE TABLE trigger_base AS SELECT {_NAMES} FROM "
                    "(SELECT *, -1 AS gen FROM trigger_base UNION ALL SELECT * FROM "
                    "trigger_log) QUALIFY row_number() OVER (PARTITION BY kid, key ORDER BY "
                    "gen DESC) = 1 ORDER BY kid")
                cur.execute("DELETE FROM trigger_log")
                cur.execute("COMMIT")
            finally:
                cur.close()

    def forget(self, keys: list[str]) -> int:
        """Remove the entries of ``keys``. A file is rewritten, so no free block keeps
        their bytes, which closes the store: forget last."""
        if not keys:
            return 0
        with self._lock:
            cur = self._con.cursor()
            try:
                cur.register("conn_forget", pa.table({"key": pa.array(keys, pa.string())}))
                row = cur.execute("SELECT count(DISTINCT key) FROM (SELECT key FROM "
                                  "trigger_base UNION ALL SELECT key FROM trigger_log) s "
                                  "SEMI JOIN conn_forget f USING (key)").fetchall()
                n = int(row[0][0])
                for table in ("trigger_base", "trigger_log"):
                    cur.execute(f"DELETE FROM {table} s USING conn_forget f "
                                "WHERE s.key = f.key")
            finally:
                cur.close()
            if n and self._path is not None:
                from conn.state.backends.duckdb.privacy import rewrite

                rewrite(self._path, self._con)
        return n

    def close(self) -> None:
        self._con.close()


def open_file(stem: Path) -> DuckDBTriggerStore:
    """The store in the DuckDB file ``stem.duckdb`` (created with its folder)."""
    from conn.state.backends.duckdb.connection import connect

    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.with_name(stem.name + ".duckdb")
    return DuckDBTriggerStore(connect(path), path)

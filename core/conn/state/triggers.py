"""Where a trigger keeps what it saw of each key (docs/traits.md, "Triggers").

Per key: whether the trigger is armed, the last value (text; change triggers compare
it), when it last fired (seconds since 1970) and how many times (``seq``: the event's
number, which its idempotency key derives from). The runtime writes a key's new entry
in the same step that commits the destination's acknowledgement of its event, and only
then; an entry of a key that did not fire is written after its batch's delivery.

A DuckDB database holds the table: a file next to the sync's state for the embedded
backend, an in-memory database for the memory backend. Calls come from the planning
thread (:meth:`load`) and the delivery thread (:meth:`commit`), each on its own cursor.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import duckdb

#: The stored columns, with their Arrow types.
SCHEMA = pa.schema([("key", pa.string()), ("armed", pa.bool_()), ("value", pa.string()),
                    ("fired_at", pa.float64()), ("seq", pa.int64())])


class TriggerStore:
    """One trigger's entries for one sync."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None = None) -> None:
        self._con = con
        #: The file holding the table (None in memory): rewritten after a forget.
        self._path = path
        self._lock = threading.Lock()
        con.execute("CREATE TABLE IF NOT EXISTS trigger_state (key VARCHAR PRIMARY KEY, "
                    "armed BOOLEAN, value VARCHAR, fired_at DOUBLE, seq BIGINT)")

    def load(self, keys: pa.Array) -> pa.Table:
        """The entries of ``keys``, aligned with them (all null where none is stored)."""
        cur = self._con.cursor()
        try:
            asked = pa.table({"key": keys, "pos": pa.array(range(len(keys)), pa.int64())})
            cur.register("asked", asked)
            out = cur.sql("SELECT s.key IS NOT NULL AS known, s.armed, s.value, s.fired_at, "
                          "s.seq FROM asked a LEFT JOIN trigger_state s ON s.key = a.key "
                          "ORDER BY a.pos").to_arrow_table()
            return out
        finally:
            cur.close()

    def commit(self, rows: pa.Table) -> None:
        """Write entries (:data:`SCHEMA`), replacing those of the same keys."""
        if rows.num_rows == 0:
            return
        with self._lock:
            cur = self._con.cursor()
            try:
                cur.register("new_rows", rows.select(SCHEMA.names).cast(SCHEMA))
                cur.execute("INSERT OR REPLACE INTO trigger_state SELECT * FROM new_rows")
            finally:
                cur.close()

    def entries(self) -> pa.Table:
        """Every entry (read once per run of a scheduled sync)."""
        cur = self._con.cursor()
        try:
            return cur.sql("SELECT * FROM trigger_state").to_arrow_table()
        finally:
            cur.close()

    def forget(self, keys: list[str]) -> int:
        """Remove the entries of ``keys`` (``conn forget``: a key and its last watched
        value are personal data); returns how many were removed. A file is rewritten,
        so no free block keeps their bytes, which closes the store: forget last."""
        if not keys:
            return 0
        with self._lock:
            cur = self._con.cursor()
            try:
                cur.register("conn_forget", pa.table({"key": pa.array(keys, pa.string())}))
                row = cur.execute("DELETE FROM trigger_state s USING conn_forget f "
                                  "WHERE s.key = f.key").fetchone()
                n = int(row[0]) if row else 0
            finally:
                cur.close()
            if n and self._path is not None:
                from conn.state.backends.duckdb.privacy import rewrite

                rewrite(self._path, self._con)
        return n

    def close(self) -> None:
        self._con.close()


def open_file(stem: Path) -> TriggerStore:
    """The store in the DuckDB file ``stem.duckdb`` (created with its folder)."""
    from conn.state.backends.duckdb.connection import connect

    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.with_name(stem.name + ".duckdb")
    return TriggerStore(connect(path), path)


class TriggerFiles:
    """For a file-based store with a ``root`` folder: a trigger's state in a DuckDB file
    per sync and trigger under ``root/triggers`` (see
    :meth:`conn.state.contracts.StateStore.trigger_state`)."""

    root: Path

    def trigger_state(self, sync: str, trigger: str) -> TriggerStore:
        from conn.state.locks import safe_name

        return open_file(self.root / "triggers" / f"{safe_name(sync)}.{safe_name(trigger)}")

"""The :class:`~conn.state.contracts.Notes` of conn's state backends.

The embedded store keeps them in a ``notes`` table of ``state/runs.duckdb`` (beside the
run history, under the same lock); PostgreSQL in ``<schema>.notes``; the memory backend
in a dict. The table is created when first written: an additive table that an older conn
never reads, so it needs no state format step.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

from conn.state.contracts import Notes

if TYPE_CHECKING:
    from conn.state.backends.duckdb.store import DuckDBStateStore
    from conn.state.backends.postgres import PostgresStateStore

_DUCKDB_TABLE = ("CREATE TABLE IF NOT EXISTS notes (topic VARCHAR, key VARCHAR, "
                 "document VARCHAR, updated_at DOUBLE, PRIMARY KEY (topic, key))")


class MemoryNotes(Notes):
    """Notes kept in this process only."""

    def __init__(self) -> None:
        self._docs: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def read(self, topic: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return json.loads(json.dumps(self._docs.get(topic, {})))

    def write(self, topic: str, key: str, document: dict[str, Any]) -> None:
        text = json.dumps(document, default=str)  # what the other backends would store
        with self._lock:
            self._docs.setdefault(topic, {})[key] = json.loads(text)


class DuckDBNotes(Notes):
    """Notes in the embedded store's run-history file."""

    def __init__(self, store: DuckDBStateStore) -> None:
        self.store = store

    def read(self, topic: str) -> dict[str, dict[str, Any]]:
        from conn.state.backends.duckdb import migrations

        with self.store._runs_db(read_only=True) as con:
            if con is None or "notes" not in migrations.table_names(con):
                return {}
            rows = con.execute("SELECT key, document FROM notes WHERE topic = ? ORDER BY key",
                               [topic]).fetchall()
        return {k: json.loads(doc) for k, doc in rows}

    def write(self, topic: str, key: str, document: dict[str, Any]) -> None:
        text = json.dumps(document, default=str)
        with self.store._runs_db() as con:
            assert con is not None
            con.execute(_DUCKDB_TABLE)
            con.execute("INSERT OR REPLACE INTO notes VALUES (?, ?, ?, ?)",
                        [topic, key, text, time.time()])


class PostgresNotes(Notes):
    """Notes in ``<schema>.notes`` of a PostgreSQL state store."""

    def __init__(self, store: PostgresStateStore) -> None:
        self.store = store
        self.s = store.schema

    def _table(self, conn: Any) -> None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self.s}.notes (topic text, key text, "
                     "document text, updated_at double precision, PRIMARY KEY (topic, key))")

    def read(self, topic: str) -> dict[str, dict[str, Any]]:
        with self.store._connect() as conn:
            exists = conn.execute("SELECT to_regclass(%s)", [f"{self.s}.notes"]).fetchall()
            if not exists or exists[0][0] is None:
                return {}
            rows = conn.execute(f"SELECT key, document FROM {self.s}.notes WHERE topic = %s "
                                "ORDER BY key", [topic]).fetchall()
        return {k: json.loads(doc) for k, doc in rows}

    def write(self, topic: str, key: str, document: dict[str, Any]) -> None:
        text = json.dumps(document, default=str)
        with self.store._connect() as conn:
            self._table(conn)
            conn.execute(f"INSERT INTO {self.s}.notes VALUES (%s, %s, %s, %s) ON CONFLICT "
                         "(topic, key) DO UPDATE SET document = excluded.document, "
                         "updated_at = excluded.updated_at", [topic, key, text, time.time()])

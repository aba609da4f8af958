"""SQLite destination: upsert, insert, update, delete and append by key, one transaction
per batch, with per-row rejections found through savepoints.

Erasure (``erase``, ``conn forget``) deletes every row holding the key, like ``delete``,
with ``PRAGMA secure_delete`` on for that transaction: SQLite otherwise leaves deleted
content in the file's free pages, readable by anyone who has the file
(https://www.sqlite.org/pragma.html#pragma_secure_delete); in WAL mode a
``wal_checkpoint(TRUNCATE)`` then moves the overwritten pages into the database file and
empties the WAL (https://www.sqlite.org/pragma.html#pragma_wal_checkpoint). The plugin
writes no other table (no history, no staging), so that is every copy it made.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.errors import ConnError
from conn.sql import (
    LazyConnection,
    Table,
    destination_properties,
    dml,
    object_fields,
    object_identifiers,
    prepare_table,
    replay_row_by_row,
    set_columns,
    table_options,
)

from conn_sqlite import common
from conn_sqlite.common import quote_ident

if TYPE_CHECKING:
    import pyarrow as pa

#: What ``erase`` does (Capabilities.erasure); see the module docstring.
ERASURE = "SQLite DELETE of every row with the key, with PRAGMA secure_delete"

_JSON_TYPES = {"INTEGER": "integer", "REAL": "number", "BOOLEAN": "boolean"}


class SqliteDestination(LazyConnection, Destination):
    """Writes to tables of a SQLite database file.

    Each batch is one transaction of ``executemany`` statements (``INSERT ... ON CONFLICT
    (key) DO UPDATE`` for upsert). If a row breaks a constraint, the batch is replayed row
    by row in savepoints: those rows are rejected with SQLite's message, the rest written.
    """

    name: ClassVar[str] = "sqlite"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("path", "tables")
    description: ClassVar[str] = "SQLite database file"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **common.CONNECTION_PROPERTIES,
            **destination_properties(batch_size=10_000),
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    #: Reads the schema, so a file that is not a database fails the check.
    check_sql: ClassVar[str] = "SELECT count(*) FROM sqlite_master"

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        self._lock = threading.Lock()

    def _open_connection(self) -> sqlite3.Connection:
        return common.connect(self.config, must_exist=False)

    def _opts(self, table: str) -> dict[str, Any]:
        return table_options(self.config, table)

    def _columns(self, table: str) -> dict[str, tuple[str, int]]:
        rows = self._connection().execute(
            "SELECT name, type, pk FROM pragma_table_info(?)", (table,)).fetchall()
        return {name: (typ, pk) for name, typ, pk in rows}

    def _unique(self, table: str) -> list[str]:
        cols = self._columns(table)
        out = [n for n, (_t, pk) in sorted(cols.items(), key=lambda kv: kv[1][1]) if pk]
        out = out if len(out) == 1 else []
        conn = self._connection()
        for _seq, idx, unique, *_ in conn.execute("SELECT * FROM pragma_index_list(?)",
                                                  (table,)).fetchall():
            if unique:
                names = [r[2] for r in conn.execute("SELECT * FROM pragma_index_info(?)",
                                                    (idx,)).fetchall()]
                if len(names) == 1 and names[0] not in out:
                    out.append(names[0])
        return out

    def objects(self) -> list[ObjectInfo]:
        rows = self._connection().execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        existing = {r[0] for r in rows}
        caps = Capabilities(batch_size=int(self.config.get("batch_size", 10_000)),
                            modes=frozenset({"upsert", "insert", "update", "mirror", "append"}),
                            erasure=ERASURE)
        out = []
        for table in sorted(existing | set(self.config.get("tables") or {})):
            opts = self._opts(table)
            cols = self._columns(table) if table in existing else {}
            idents = object_identifiers(
                opts.get("key"), self._unique(table) if table in existing else [], cols)
            props: dict[str, Any] = {}
            for c, (typ, _pk) in cols.items():
                jt = _JSON_TYPES.get(typ.upper())
                props[c] = {"type": [jt, "null"]} if jt else {}
            fields = object_fields(props, idents, open_=opts["evolve"] or table not in existing)
            out.append(ObjectInfo(table, fields, tuple(idents), caps))
        return out

    def write_batch(self, request: WriteRequest) -> WriteResult:
        with self._lock:
            conn = self._connection()
            try:
                return self._write(conn, request)
            except sqlite3.Error as exc:
                raise ConnError(f"destination {self.instance!r} table "
                                f"{request.object.name!r}: {exc}") from None
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def _write(self, conn: sqlite3.Connection, request: WriteRequest) -> WriteResult:
        if request.operation == "erase":
            return self._erase(conn, request)
        return self._write_op(conn, request, request.operation)

    def _erase(self, conn: sqlite3.Connection, request: WriteRequest) -> WriteResult:
        """A ``delete`` whose freed space is overwritten with zeros (``secure_delete``),
        then, in WAL mode, checkpointed so no frame keeps the old pages."""
        (previous,) = conn.execute("PRAGMA secure_delete").fetchone()
        conn.execute("PRAGMA secure_delete = ON")
        try:
            result = self._write_op(conn, request, "delete")
        finally:
            conn.execute(f"PRAGMA secure_delete = {int(previous)}")
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return result

    def _write_op(self, conn: sqlite3.Connection, request: WriteRequest, op: str
                  ) -> WriteResult:
        table, key = request.object.name, request.match_key
        batch = request.records
        if not self._prepare(table, batch.schema, key, op):
            return WriteResult.ok()
        names = [key] if op == "delete" else batch.schema.names
        sql = self._sql(op, table, names, key)
        if op == "update":  # SET values first, the key last
            rows = common.rows_of(batch, [*set_columns(names, key), key])
        else:
            rows = common.rows_of(batch, names)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, rows)
            missing = self._missing(conn, op, table, key, batch)
            conn.execute("COMMIT")
            return WriteResult(rejected=missing)
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError):
            conn.execute("ROLLBACK")
        # Replay row by row in savepoints to pin the failure on the bad rows.
        conn.execute("BEGIN IMMEDIATE")

        def write_row(idx: int) -> list[Rejection]:
            conn.execute(sql, rows[idx])
            return []

        rejected = replay_row_by_row(conn.execute, len(rows), write_row, _reject,
                                     release_after_rollback=True)
        rejected += self._missing(conn, op, table, key, batch)
        conn.execute("COMMIT")
        return WriteResult(rejected=sorted(rejected, key=lambda r: r.index))

    def _sql(self, op: str, table: str, names: list[str], key: str) -> str:
        q = quote_ident
        sql = dml(op, q(table), names, key, quote=q, mark="?")
        if op == "upsert":
            others = [c for c in names if c != key]
            action = ("DO UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in others)
                      if others else "DO NOTHING")
            sql += f" ON CONFLICT ({q(key)}) {action}"
        return sql

    def _missing(self, conn: sqlite3.Connection, op: str, table: str, key: str,
                 batch: pa.RecordBatch) -> list[Rejection]:
        """For ``update``: rows whose key the table does not hold are rejected."""
        if op != "update":
            return []
        keys = common.column_values(batch.column(key))
        found = {r[0] for r in conn.execute(
            f"SELECT {quote_ident(key)} FROM {quote_ident(table)} WHERE {quote_ident(key)} "
            f"IN (SELECT value FROM json_each(?))", (json.dumps(keys, default=str),))}
        return [Rejection(i, f"no row with {key} = {k!r} to update", retryable=False)
                for i, k in enumerate(keys) if k not in found]

    def _prepare(self, table: str, schema: pa.Schema, key: str, op: str) -> bool:
        """Create or evolve the table if allowed; False when there is nothing to delete."""
        conn = self._connection()

        def describe(fresh: bool) -> Table | None:
            cols = self._columns(table)
            if not cols:
                return None
            return Table({c: typ for c, (typ, _pk) in cols.items()}, self._unique(table))

        def create(schema: pa.Schema, primary: str) -> None:
            defs = [f"{quote_ident(f.name)} {common.declared_type(f)}" for f in schema]
            conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} "
                         f"({', '.join(defs)}, PRIMARY KEY ({quote_ident(primary)}))")

        def add_columns(fields: list[pa.Field]) -> None:
            for f in fields:
                conn.execute(f"ALTER TABLE {quote_ident(table)} ADD COLUMN "
                             f"{quote_ident(f.name)} {common.declared_type(f)}")

        return prepare_table(table, schema, key, op, options=self._opts(table),
                             instance=self.instance, describe=describe, create=create,
                             add_columns=add_columns) is not None


def _reject(idx: int, exc: Exception) -> Rejection | None:
    """Constraint and value errors are the row's; a missing parent row may come later."""
    if not isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError |
                      sqlite3.InterfaceError):
        return None
    return Rejection(idx, str(exc), retryable="FOREIGN KEY" in str(exc))

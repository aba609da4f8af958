"""MariaDB/MySQL destination: multi-row ``INSERT ... ON DUPLICATE KEY UPDATE``, ``UPDATE``
and ``DELETE`` by key, one transaction per batch, per-row rejections via savepoints.

Erasure (``erase``, ``conn forget``) is ``delete``: one ``DELETE ... WHERE key IN (...)``
removes every row holding the key (an ``append`` table may hold several). The plugin
writes no other table (no history, no staging). What the server itself keeps is outside
a DELETE's reach and the database operator's to govern: InnoDB's undo logs until purge,
the binary log, replicas and backups
(https://dev.mysql.com/doc/refman/8.0/en/innodb-purge-configuration.html).
"""

from __future__ import annotations

import functools
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
from conn.errors import ConfigError, RetryLater
from conn.sql import (
    LazyConnection,
    Table,
    TypeRule,
    column_type,
    destination_properties,
    dml,
    object_fields,
    object_identifiers,
    prepare_table,
    replay_row_by_row,
    set_columns,
    table_options,
)

from conn_mysql import common
from conn_mysql.common import quote_ident
from conn_mysql.source import json_columns

if TYPE_CHECKING:
    import pyarrow as pa

#: What ``erase`` does (Capabilities.erasure); see the module docstring.
ERASURE = "MySQL/MariaDB DELETE of every row with the key"

_JSON = {"tinyint": "integer", "smallint": "integer", "mediumint": "integer",
         "int": "integer", "bigint": "integer", "decimal": "number", "float": "number",
         "double": "number"}
#: Arrow type families a column type accepts (text columns accept anything).
_FAMILY = {"tinyint": "num", "smallint": "num", "mediumint": "num", "int": "num",
           "bigint": "num", "decimal": "num", "float": "num", "double": "num",
           "date": "time", "datetime": "time", "timestamp": "time", "time": "time",
           "year": "num", "binary": "bin", "varbinary": "bin", "blob": "bin",
           "tinyblob": "bin", "mediumblob": "bin", "longblob": "bin", "json": "json"}


@functools.cache
def _arrow_families() -> list[TypeRule]:
    """The family of an Arrow type, as :data:`_FAMILY` gives a column's."""
    import pyarrow as pa

    t = pa.types
    return [
        (lambda x: t.is_integer(x) or t.is_floating(x) or t.is_decimal(x) or t.is_boolean(x),
         "num"),
        (t.is_temporal, "time"),
        (lambda x: t.is_binary(x) or t.is_large_binary(x), "bin"),
        (lambda x: t.is_list(x) or t.is_struct(x) or t.is_map(x), "json"),
        (lambda x: True, "text"),
    ]


class MysqlDestination(LazyConnection, Destination):
    """Writes MariaDB/MySQL tables: upsert (``ON DUPLICATE KEY UPDATE``), insert, update,
    delete and append, each batch in one InnoDB transaction. Rows a constraint or a strict
    SQL mode refuses are found by replaying the batch row by row in savepoints."""

    name: ClassVar[str] = "mysql"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("url", "host", "port", "database", "tables")
    description: ClassVar[str] = "MariaDB / MySQL tables"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **common.CONNECTION_PROPERTIES,
            **destination_properties(batch_size=5_000),
        },
        "additionalProperties": False,
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        self._lock = threading.Lock()

    def _open_connection(self) -> Any:
        return common.connect(self.config)

    def _finish(self, conn: Any) -> None:
        conn.commit()  # the statements it runs include DDL (create, evolve)

    def _error_message(self, exc: BaseException) -> str:
        return common.error_message(exc)

    def _opts(self, table: str) -> dict[str, Any]:
        return table_options(self.config, table)

    def _catalog(self) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
        cols: dict[str, dict[str, str]] = {}
        with self._connection().cursor() as cur:
            jsons = json_columns(cur)
        for table, col, dt in self._fetchall(
                "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION"):
            cols.setdefault(table, {})[col] = "json" if (table, col) in jsons else dt.lower()
        unique: dict[str, list[str]] = {}
        for table, index, col in self._fetchall(
                "SELECT TABLE_NAME, INDEX_NAME, MAX(COLUMN_NAME) FROM information_schema."
                "STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND NON_UNIQUE = 0 "
                "GROUP BY TABLE_NAME, INDEX_NAME HAVING COUNT(*) = 1 "
                "ORDER BY TABLE_NAME, INDEX_NAME <> 'PRIMARY', INDEX_NAME"):
            del index
            unique.setdefault(table, []).append(col)
        return cols, unique

    def objects(self) -> list[ObjectInfo]:
        cols, unique = self._catalog()
        caps = Capabilities(batch_size=int(self.config.get("batch_size", 5_000)),
                            modes=frozenset({"upsert", "insert", "update", "mirror", "append"}),
                            erasure=ERASURE)
        out = []
        for table in sorted(set(cols) | set(self.config.get("tables") or {})):
            opts = self._opts(table)
            idents = object_identifiers(opts.get("key"), unique.get(table, []),
                                        cols.get(table, {}))
            props: dict[str, Any] = {}
            for c, dt in cols.get(table, {}).items():
                jt = _JSON.get(dt)
                props[c] = {"type": [jt, "null"]} if jt else {}
            fields = object_fields(props, idents, open_=opts["evolve"] or table not in cols)
            out.append(ObjectInfo(table, fields, tuple(idents), caps))
        return out

    # --- writing ------------------------------------------------------------------------

    def write_batch(self, request: WriteRequest) -> WriteResult:
        with self._lock:
            try:
                return self._write(request)
            except (ConfigError, RetryLater):
                raise
            except Exception as exc:
                # Lost connection or server error: roll back (or drop the connection);
                # nothing of this batch was committed, all its rows stay pending.
                try:
                    if self._conn is not None:
                        self._conn.rollback()
                except Exception:
                    self._drop_connection()
                raise RetryLater(f"destination {self.instance!r} table "
                                 f"{request.object.name!r}: {common.error_message(exc)}"
                                 ) from None

    def _write(self, request: WriteRequest) -> WriteResult:
        # An erasure is a delete of every row with the key (module docstring).
        op = "delete" if request.operation == "erase" else request.operation
        table, key = request.object.name, request.match_key
        batch = request.records
        if not self._prepare(table, batch.schema, key, op):
            return WriteResult.ok()
        names = [key] if op == "delete" else batch.schema.names
        conn = self._connection()
        conn.ping(reconnect=False)
        if op == "update":
            rows = common.rows_of(batch, [*set_columns(names, key), key])
        else:
            rows = common.rows_of(batch, names)
        sql = self._sql(op, table, names, key)
        try:
            with conn.cursor() as cur:
                if op == "delete":
                    keys = [r[0] for r in rows]
                    marks = ", ".join(["%s"] * len(keys))
                    cur.execute(f"DELETE FROM {quote_ident(table)} WHERE {quote_ident(key)} "
                                f"IN ({marks})", keys)
                    rejected: list[Rejection] = []
                elif op == "update":
                    rejected = []
                    for idx, row in enumerate(rows):
                        if cur.execute(sql, row) == 0:
                            rejected.append(_not_found(idx, key))
                else:
                    cur.executemany(sql, rows)  # one multi-row INSERT per packet
                    rejected = []
            conn.commit()
            return WriteResult(rejected=rejected)
        except Exception as exc:
            if common.error_code(exc) not in common.ROW_ERRORS:
                raise
            conn.rollback()
        return self._row_by_row(conn, op, sql, rows, key)

    def _row_by_row(self, conn: Any, op: str, sql: str, rows: list[tuple[Any, ...]],
                    key: str) -> WriteResult:
        with conn.cursor() as cur:
            conn.begin()

            def write_row(idx: int) -> list[Rejection]:
                if cur.execute(sql, rows[idx]) == 0 and op == "update":
                    return [_not_found(idx, key)]
                return []

            rejected = replay_row_by_row(cur.execute, len(rows), write_row, _reject)
        conn.commit()
        return WriteResult(rejected=rejected)

    def _sql(self, op: str, table: str, names: list[str], key: str) -> str:
        q = quote_ident
        sql = dml(op, q(table), names, key, quote=q, mark="%s")
        if op == "upsert":
            others = [c for c in names if c != key] or [key]
            sql += " ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{q(c)} = VALUES({q(c)})" for c in others)
        return sql

    def _prepare(self, table: str, schema: pa.Schema, key: str, op: str) -> bool:
        """Create or evolve the table if allowed; False when there is nothing to delete."""

        def describe(fresh: bool) -> Table | None:
            cols, unique = self._catalog()
            return Table(cols[table], unique.get(table, [])) if table in cols else None

        def create(schema: pa.Schema, primary: str) -> None:
            defs = []
            for f in schema:
                typ = common.column_type(f)
                if f.name == primary and typ in ("LONGTEXT", "LONGBLOB"):
                    # a key needs a length: InnoDB indexes no whole TEXT/BLOB
                    typ = "VARCHAR(255)" if typ == "LONGTEXT" else "VARBINARY(255)"
                defs.append(f"{quote_ident(f.name)} {typ}")
            self._fetchall(f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} "
                           f"({', '.join(defs)}, PRIMARY KEY ({quote_ident(primary)})) "
                           f"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")

        def add_columns(fields: list[pa.Field]) -> None:
            for f in fields:
                self._fetchall(f"ALTER TABLE {quote_ident(table)} ADD COLUMN "
                               f"{quote_ident(f.name)} {common.column_type(f)}")

        return prepare_table(
            table, schema, key, op, options=self._opts(table), instance=self.instance,
            describe=describe, create=create, add_columns=add_columns,
            families=(lambda column_type: _FAMILY.get(column_type, "text"),
                      lambda f: column_type(f, _arrow_families()))) is not None


def _reject(idx: int, exc: Exception) -> Rejection | None:
    """Errors caused by the row's values; a missing parent row (1452) may come later."""
    code = common.error_code(exc)
    if code not in common.ROW_ERRORS:
        return None
    return Rejection(idx, common.error_message(exc), retryable=code == 1452)


def _not_found(idx: int, key: str) -> Rejection:
    return Rejection(idx, f"no row with this {key} to update", retryable=False)

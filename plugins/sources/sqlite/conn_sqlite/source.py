"""SQLite source: tables, views and queries as Arrow record batches."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from conn.errors import CheckFailed, ConfigError, ConnError
from conn.source import Source, SourceState, StreamInfo

from conn_sqlite import common
from conn_sqlite.common import quote_ident

if TYPE_CHECKING:
    import pyarrow as pa


class SqliteSource(Source):
    """Reads SQLite tables and views, or a query, ``batch_rows`` rows at a time.

    Types come from the declared column types (see :func:`conn_sqlite.common.arrow_type`).
    A stream with a ``cursor`` column reads incrementally (``cursor > bookmark``, in cursor
    order), with a bookmark after each batch that no later row shares.
    """

    name = "sqlite"
    description = "SQLite database file"
    config_schema = {
        "type": "object",
        "properties": {
            **common.CONNECTION_PROPERTIES,
            "tables": {"type": "array", "items": {"type": "string"}},
            "streams": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "cursor": {"type": "string"},
                        "primary_key": {"type": "array", "items": {"type": "string"}},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    def __init__(self, config: Any = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = common.connect(self.config, must_exist=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def check(self) -> None:
        try:
            self._connection().execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.Error as exc:
            raise CheckFailed(f"source {self.instance!r}: {exc}") from None

    def _table_fields(self, table: str) -> tuple[list[pa.Field], tuple[str, ...]]:
        info = self._connection().execute(
            f"SELECT name, type, pk FROM pragma_table_info({_literal(table)})").fetchall()
        fields = [common.arrow_field(name, typ) for name, typ, _pk in info]
        pkey = tuple(name for name, _t, pk in sorted(info, key=lambda r: r[2]) if pk)
        return fields, pkey

    def discover(self) -> list[StreamInfo]:
        import pyarrow as pa

        rows = self._connection().execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        tables = [r[0] for r in rows]
        wanted = self.config.get("tables")
        if wanted:
            missing = sorted(set(wanted) - set(tables))
            if missing:
                raise ConfigError(f"source {self.instance!r}: no table(s) {missing}",
                                  path="config.tables")
            tables = [t for t in tables if t in set(wanted)]
        settings = self.config.get("streams", {})
        out = []
        for table in tables:
            fields, pkey = self._table_fields(table)
            opts = settings.get(table, {})
            cursor = opts.get("cursor")
            if cursor and cursor not in [f.name for f in fields]:
                raise ConfigError(f"stream {table!r}: cursor column {cursor!r} does not exist",
                                  path=f"config.streams.{table}.cursor")
            out.append(StreamInfo(table, pa.schema(fields),
                                  tuple(opts.get("primary_key") or pkey), cursor))
        return out

    def query_stream(self, query: str, primary_key: tuple[str, ...]) -> StreamInfo:
        import pyarrow as pa

        try:
            cur = self._connection().execute(f"SELECT * FROM ({query}) LIMIT 0")
        except sqlite3.Error as exc:
            raise ConfigError(f"query failed: {exc}") from None
        # A query's columns have no declared type: read them as text unless the stream
        # is narrowed by the mapping.
        names = [d[0] for d in cur.description]
        missing = [k for k in primary_key if k not in names]
        if missing:
            raise ConfigError(f"query has no column(s) {missing} for the primary key")
        return StreamInfo("query", pa.schema([pa.field(n, pa.string()) for n in names]),
                          tuple(primary_key), query=query)

    def read_batches(self, stream: StreamInfo, state: Any | None,
                     batch_rows: int) -> Iterator[pa.RecordBatch | SourceState]:
        relation = f"({stream.query})" if stream.query else quote_ident(stream.name)
        cols = ", ".join(common.select_expr(f) for f in stream.schema)
        sql = f"SELECT {cols} FROM {relation}"
        params: tuple[Any, ...] = ()
        if stream.cursor:
            cur_col = quote_ident(stream.cursor)
            if state is not None:
                sql += f" WHERE {cur_col} > ?"
                params = (state,)
            sql += f" ORDER BY {cur_col}"
        batches = self._stream(sql, params, stream.schema, batch_rows)
        if stream.cursor:
            yield from _with_bookmarks(batches, stream.cursor, stream.schema)
        else:
            yield from batches

    def _stream(self, sql: str, params: tuple[Any, ...], schema: pa.Schema,
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        conn = self._connection()
        try:
            cur = conn.execute("BEGIN")  # one snapshot for the whole read
            cur.execute(sql, params)
            while rows := cur.fetchmany(batch_rows):
                cols = list(zip(*rows, strict=True))
                arrays = [common.to_arrow(list(c), f.type) for c, f in zip(cols, schema,
                                                                           strict=True)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            conn.execute("COMMIT")
        except (sqlite3.Error, pa.ArrowInvalid) as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise ConnError(f"source {self.instance!r}: reading failed: {exc}") from None
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _bookmark(value: Any, t: pa.DataType) -> Any:
    import pyarrow as pa

    if isinstance(value, bool | int | float):
        return value
    if pa.types.is_timestamp(t):
        return value.replace(tzinfo=None).isoformat(sep=" ")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _with_bookmarks(batches: Iterator[pa.RecordBatch], cursor: str,
                    schema: pa.Schema) -> Iterator[pa.RecordBatch | SourceState]:
    """Yield batches, then a bookmark once no later row can share its last cursor value."""
    t = schema.field(cursor).type
    pending = None
    for batch in batches:
        if pending is not None:
            yield pending
            last = pending.column(cursor)[-1].as_py()
            if last is not None and batch.column(cursor)[0].as_py() != last:
                yield SourceState(_bookmark(last, t))
        pending = batch
    if pending is not None:
        yield pending
        last = pending.column(cursor)[-1].as_py()
        if last is not None:
            yield SourceState(_bookmark(last, t))

"""SQLite source: tables, views and queries as Arrow record batches."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from conn.errors import ConfigError, ConnError
from conn.source import Source, SourceState, StreamInfo
from conn.sql import (
    LazyConnection,
    check_query_key,
    incremental_query,
    select_tables,
    source_properties,
    stream_options,
    with_bookmarks,
)

from conn_sqlite import common
from conn_sqlite.common import quote_ident

if TYPE_CHECKING:
    import pyarrow as pa


class SqliteSource(LazyConnection, Source):
    """Reads SQLite tables and views, or a query, ``batch_rows`` rows at a time.

    Types come from the declared column types (see :func:`conn_sqlite.common.arrow_type`).
    A stream with a ``cursor`` column reads incrementally (``cursor > bookmark``, in cursor
    order), with a bookmark after each batch that no later row shares.
    """

    name: ClassVar[str] = "sqlite"
    description: ClassVar[str] = "SQLite database file"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **common.CONNECTION_PROPERTIES,
            **source_properties(),
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    #: Reads the schema, so a file that is not a database fails the check.
    check_sql: ClassVar[str] = "SELECT count(*) FROM sqlite_master"

    def _open_connection(self) -> sqlite3.Connection:
        return common.connect(self.config, must_exist=True)

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
        tables = select_tables([r[0] for r in rows], self.config.get("tables"),
                                   instance=self.instance)
        out = []
        for table in tables:
            fields, pkey = self._table_fields(table)
            cursor, primary_key = stream_options(self.config, table,
                                                     [f.name for f in fields], pkey)
            out.append(StreamInfo(table, pa.schema(fields), primary_key, cursor))
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
        check_query_key(primary_key, names)
        return StreamInfo("query", pa.schema([pa.field(n, pa.string()) for n in names]),
                          tuple(primary_key), query=query)

    def read_batches(self, stream: StreamInfo, state: Any | None,
                     batch_rows: int) -> Iterator[pa.RecordBatch | SourceState]:
        relation = f"({stream.query})" if stream.query else quote_ident(stream.name)
        cols = ", ".join(common.select_expr(f) for f in stream.schema)
        query, params = incremental_query(
            f"SELECT {cols} FROM {relation}",
            quote_ident(stream.cursor) if stream.cursor else None, state, "?")
        batches = self._stream(query, params, stream.schema, batch_rows)
        if stream.cursor:
            t = stream.schema.field(stream.cursor).type
            yield from with_bookmarks(batches, stream.cursor,
                                          lambda value: _bookmark(value, t))
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


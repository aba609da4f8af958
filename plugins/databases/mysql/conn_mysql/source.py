"""MariaDB/MySQL source: tables and queries streamed with an unbuffered cursor."""

from __future__ import annotations

import contextlib
import re
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

from conn_mysql import common
from conn_mysql.common import quote_ident

if TYPE_CHECKING:
    import pyarrow as pa

_COLUMNS_SQL = """
SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.NUMERIC_PRECISION,
       c.NUMERIC_SCALE, c.COLUMN_KEY
FROM information_schema.COLUMNS c
WHERE c.TABLE_SCHEMA = DATABASE()
ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION
"""

_PKEY_SQL = """
SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA = DATABASE() AND CONSTRAINT_NAME = 'PRIMARY'
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""

_JSON_CHECK = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.I)


def json_columns(cur: Any) -> set[tuple[str, str]]:
    """MariaDB stores JSON as LONGTEXT with a json_valid() check: find those columns."""
    try:
        cur.execute("SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = DATABASE()")
    except Exception:  # MySQL < 8.0.16 has no such view
        return set()
    out = set()
    for table, clause in cur.fetchall():
        for m in _JSON_CHECK.finditer(clause or ""):
            out.add((table, m.group(1).replace("``", "`")))
    return out


class MysqlSource(LazyConnection, Source):
    """Reads MariaDB/MySQL tables and queries as Arrow batches.

    Rows stream through an unbuffered cursor (``SSCursor``) in one consistent-snapshot
    transaction, ``batch_rows`` at a time; a ``cursor`` column makes reads incremental.
    """

    name: ClassVar[str] = "mysql"
    description: ClassVar[str] = "MariaDB / MySQL tables and queries"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **common.CONNECTION_PROPERTIES,
            **source_properties(),
        },
        "additionalProperties": False,
    }

    def _open_connection(self) -> Any:
        return common.connect(self.config)

    def _error_message(self, exc: BaseException) -> str:
        return common.error_message(exc)

    def discover(self) -> list[StreamInfo]:
        import pyarrow as pa

        conn = self._connection()
        with conn.cursor() as cur:
            jsons = json_columns(cur)
        fields: dict[str, list[pa.Field]] = {}
        for table, col, dt, ct, prec, scale, _key in self._fetchall(_COLUMNS_SQL):
            fields.setdefault(table, []).append(
                common.arrow_field(col, dt, ct, prec, scale, (table, col) in jsons))
        pkeys: dict[str, list[str]] = {}
        for table, col in self._fetchall(_PKEY_SQL):
            pkeys.setdefault(table, []).append(col)
        tables = select_tables(sorted(fields), self.config.get("tables"),
                               instance=self.instance)
        out = []
        for table in tables:
            cursor, primary_key = stream_options(self.config, table,
                                                 [f.name for f in fields[table]],
                                                 pkeys.get(table, ()))
            out.append(StreamInfo(table, pa.schema(fields[table]), primary_key, cursor))
        return out

    def query_stream(self, query: str, primary_key: tuple[str, ...]) -> StreamInfo:
        """A query's stream: its columns described by a temporary view's catalog entry."""
        import pyarrow as pa
        from pymysql.constants import FIELD_TYPE

        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM ({query}) AS q LIMIT 0")
                desc = cur.description
            conn.rollback()
        except Exception as exc:
            raise ConfigError(f"query failed: {common.error_message(exc)}") from None
        by_code = {
            FIELD_TYPE.TINY: pa.int8(), FIELD_TYPE.SHORT: pa.int16(),
            FIELD_TYPE.LONG: pa.int32(), FIELD_TYPE.INT24: pa.int32(),
            FIELD_TYPE.LONGLONG: pa.int64(), FIELD_TYPE.FLOAT: pa.float32(),
            FIELD_TYPE.DOUBLE: pa.float64(), FIELD_TYPE.DATE: pa.date32(),
            FIELD_TYPE.DATETIME: pa.timestamp("us"),
            FIELD_TYPE.TIMESTAMP: pa.timestamp("us", "UTC"),
            FIELD_TYPE.TIME: pa.duration("us"), FIELD_TYPE.YEAR: pa.int16(),
        }
        fields = []
        for name, code, _ds, _size, precision, scale, _null in desc:
            if code == FIELD_TYPE.NEWDECIMAL:
                p = int(precision or 10) - (1 if scale else 0)
                t = pa.decimal128(max(p, 1), int(scale or 0))
            else:
                t = by_code.get(code, pa.string())
            fields.append(pa.field(name, t))
        check_query_key(primary_key, [f.name for f in fields])
        return StreamInfo("query", pa.schema(fields), tuple(primary_key), query=query)

    def read_batches(self, stream: StreamInfo, state: Any | None,
                     batch_rows: int) -> Iterator[pa.RecordBatch | SourceState]:
        relation = f"({stream.query}) AS q" if stream.query else quote_ident(stream.name)
        cols = ", ".join(quote_ident(f.name) for f in stream.schema)
        sql, params = incremental_query(
            f"SELECT {cols} FROM {relation}",
            quote_ident(stream.cursor) if stream.cursor else None, state, "%s")
        batches = self._stream(sql, params, stream.schema, batch_rows)
        if stream.cursor:
            yield from with_bookmarks(batches, stream.cursor, _bookmark)
        else:
            yield from batches

    def _stream(self, sql: str, params: tuple[Any, ...], schema: pa.Schema,
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        # A connection of its own: an unbuffered result blocks its connection until read.
        conn = common.connect(self.config, streaming=True)
        try:
            with conn.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute(sql, params or None)
                while rows := cur.fetchmany(batch_rows):
                    cols = list(zip(*rows, strict=True))
                    arrays = [_to_arrow(list(c), f.type) for c, f in zip(cols, schema,
                                                                         strict=True)]
                    yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        except ConnError:
            raise
        except Exception as exc:
            raise ConnError(
                f"source {self.instance!r}: reading failed: {common.error_message(exc)}"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def _to_arrow(values: list[Any], t: pa.DataType) -> pa.Array:
    import pyarrow as pa

    if pa.types.is_binary(t):
        values = [v.encode() if isinstance(v, str) else v for v in values]
    elif pa.types.is_string(t):
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                  for v in values]
    elif pa.types.is_boolean(t):
        values = [None if v is None else bool(v) for v in values]
    elif pa.types.is_integer(t) and any(isinstance(v, bytes) for v in values):  # BIT
        values = [int.from_bytes(v, "big") if isinstance(v, bytes) else v for v in values]
    return pa.array(values, t)


def _bookmark(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    if hasattr(value, "tzinfo") and hasattr(value, "hour"):  # datetime: UTC session text
        return value.replace(tzinfo=None).isoformat(sep=" ")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


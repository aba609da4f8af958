"""What the SQLite source and destination share: opening the file, quoting
(:func:`conn.sql.quote_ident`, double quotes), and the mapping between declared SQLite
column types and Arrow types."""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conn.errors import CheckFailed, ConfigError
from conn.sql import SQL_TYPE_KEY, TypeRule, column_type, quote_ident

if TYPE_CHECKING:
    import pyarrow as pa

CONNECTION_PROPERTIES: dict[str, Any] = {
    "path": {"type": "string", "description": "database file (created by the destination)"},
    "timeout": {"type": "number", "minimum": 0, "default": 30,
                "description": "seconds to wait for a lock held by another writer"},
}


def connect(config: Mapping[str, Any], *, must_exist: bool) -> sqlite3.Connection:
    """Open the database in autocommit mode (transactions are explicit BEGIN/COMMIT)."""
    path = config.get("path")
    if not path:
        raise ConfigError("missing required setting 'path'", path="config.path")
    uri = f"file:{path}?mode=rw" if must_exist else f"file:{path}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                               timeout=float(config.get("timeout", 30)),
                               check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise CheckFailed(f"cannot open SQLite database {path!r}: {exc}") from None
    return conn


_DECIMAL = re.compile(r"(DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def arrow_type(declared: str) -> pa.DataType:
    """Arrow type for a declared column type (SQLite's affinity rules, refined by the
    common names: BOOLEAN, DATE, DATETIME/TIMESTAMP, TIME, DECIMAL(p,s), JSON, UUID)."""
    import pyarrow as pa

    d = (declared or "").upper().strip()
    m = _DECIMAL.match(d)
    if m:
        p, s = int(m.group(2)), int(m.group(3) or 0)
        return pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
    if d in ("BOOLEAN", "BOOL"):
        return pa.bool_()
    if d == "DATE":
        return pa.date32()
    if d in ("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"):
        return pa.timestamp("us", "UTC")
    if d in ("DATETIME", "TIMESTAMP"):
        return pa.timestamp("us")
    if d == "TIME":
        return pa.time64("us")
    if "INT" in d:
        return pa.int64()
    if any(x in d for x in ("CHAR", "CLOB", "TEXT")) or d in ("JSON", "UUID"):
        return pa.string()
    if "BLOB" in d:
        return pa.binary()
    if any(x in d for x in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    return pa.string()  # NUMERIC affinity or no type: read as text, losing nothing


def arrow_field(name: str, declared: str) -> pa.Field:
    import pyarrow as pa

    tag = (declared or "").upper().strip()
    meta = {SQL_TYPE_KEY: tag.lower().encode()} if tag in ("JSON", "UUID") else None
    return pa.field(name, arrow_type(declared), metadata=meta)


def select_expr(field: pa.Field) -> str:
    """Types stored as text are selected as text, whatever affinity stored them."""
    import pyarrow as pa

    col = quote_ident(field.name)
    t = field.type
    if pa.types.is_decimal(t) or pa.types.is_date(t) or pa.types.is_timestamp(t) or \
            pa.types.is_time(t) or pa.types.is_string(t):
        return f"CAST({col} AS TEXT)"
    return col


def to_arrow(values: list[Any], t: pa.DataType) -> pa.Array:
    """A column of fetched values as an Arrow array of type ``t`` (casts from text are
    vectorised)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_decimal(t) or pa.types.is_date(t):
        return pc.cast(pa.array(values, pa.string()), t)
    if pa.types.is_timestamp(t):
        s = pa.array(values, pa.string())
        s = pc.replace_substring_regex(s, r"^(\d{4}-\d\d-\d\d)T", r"\1 ")
        if t.tz:
            s = pc.replace_substring_regex(s, r"(Z|[+-]00:?00)$", "")
            return pc.cast(s, pa.timestamp("us")).cast(t)
        return pc.cast(s, t)
    if pa.types.is_time(t):
        import datetime as dt

        return pa.array([None if v is None else dt.time.fromisoformat(v) for v in values], t)
    if pa.types.is_boolean(t):
        return pc.cast(pa.array(values, pa.int64()), t)
    return pa.array(values, t)


#: Declared types of tagged text columns.
TAGGED_TYPES = {"json": "JSON", "jsonb": "JSON", "uuid": "UUID"}


@functools.cache
def type_rules() -> list[TypeRule]:
    """Arrow type -> the declared type ``create_table`` and ``evolve`` use (first match
    wins; SQLite stores any value under any declared type, these keep it readable)."""
    import pyarrow as pa

    t = pa.types
    return [
        (t.is_boolean, "BOOLEAN"),
        (t.is_integer, "INTEGER"),
        (t.is_floating, "REAL"),
        (t.is_decimal, lambda f: f"DECIMAL({f.type.precision},{f.type.scale})"),
        (t.is_date, "DATE"),
        (t.is_timestamp, lambda f: "TIMESTAMPTZ" if f.type.tz else "TIMESTAMP"),
        (t.is_time, "TIME"),
        (lambda x: t.is_binary(x) or t.is_large_binary(x) or t.is_fixed_size_binary(x),
         "BLOB"),
        (lambda x: t.is_list(x) or t.is_large_list(x) or t.is_struct(x) or t.is_map(x),
         "JSON"),
        (lambda x: True, "TEXT"),
    ]


def declared_type(field: pa.Field) -> str:
    """The declared type ``create_table`` and ``evolve`` give an Arrow field."""
    return column_type(field, type_rules(), tags=TAGGED_TYPES, dialect="SQLite")


def column_values(col: pa.Array) -> list[Any]:
    """Python values to bind for one Arrow column: text for decimals, dates and times
    (cast in Arrow, vectorised), JSON text for nested values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_timestamp(t):
        if t.tz:
            col = col.cast(pa.timestamp(t.unit))
        # %S prints the fraction for sub-second units
        return pc.strftime(col, "%Y-%m-%d %H:%M:%S").to_pylist()
    if pa.types.is_decimal(t) or pa.types.is_date(t) or pa.types.is_time(t):
        return pc.cast(col, pa.string()).to_pylist()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t) or \
            pa.types.is_map(t):
        return [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()]
    if pa.types.is_unsigned_integer(t) and t.bit_width == 64:
        return [None if v is None else str(v) for v in col.to_pylist()]
    return col.to_pylist()


def rows_of(batch: pa.RecordBatch, names: list[str]) -> list[tuple[Any, ...]]:
    """Row tuples to bind, built column-wise."""
    cols = [column_values(batch.column(n)) for n in names]
    return list(zip(*cols, strict=True))


def to_json_text(value: Any) -> str:
    return json.dumps(value, default=str)

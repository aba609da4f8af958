"""PostgreSQL's text output of column values, as Arrow columns of the stream's types.

Logical replication (pgoutput, text mode) sends every value as the type's text output.
Each column is converted whole: Arrow's casts for numbers, decimals, dates and
timestamps (PostgreSQL's ``2024-01-02 03:04:05.6+02`` included), DuckDB's for times and
intervals (its parser reads PostgreSQL's formats), a comparison for booleans (``t``/
``f``). Only ``bytea`` (hex) and arrays are parsed value by value in Python.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from conn.errors import ConnError


def column(values: list[str | None] | pa.Array, field: pa.Field, where: str) -> pa.Array:
    """``values`` (text or None, or a string array) as an Arrow array of ``field``'s
    type; ``where`` names the table for errors."""
    text = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    try:
        return _convert(text, field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise ConnError(f"{where}: column {field.name!r}: cannot read a value as "
                        f"{field.type} ({str(exc).splitlines()[0]})") from None


def _convert(text: pa.Array, t: pa.DataType) -> pa.Array:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return text.cast(t)
    if pa.types.is_boolean(t):
        return pc.equal(text, "t")
    if pa.types.is_floating(t):
        # PostgreSQL writes infinities as "Infinity"; Arrow reads "inf".
        text = pc.replace_substring(text, "Infinity", "inf")
        return pc.cast(text, t)
    if (pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_date(t)
            or pa.types.is_timestamp(t)):
        return pc.cast(text, t)
    if pa.types.is_time(t) or pa.types.is_interval(t):
        return _duckdb_cast(text, "TIME" if pa.types.is_time(t) else "INTERVAL").cast(t)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.array([None if v is None else _bytea(v) for v in text.to_pylist()], t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        items = [None if v is None else parse_array(v) for v in text.to_pylist()]
        flat = [x for row in items if row is not None for x in row]
        converted = _convert(pa.array(flat, pa.string()), t.value_type).to_pylist()
        out: list[list[Any] | None] = []
        at = 0
        for row in items:
            if row is None:
                out.append(None)
            else:
                out.append(converted[at:at + len(row)])
                at += len(row)
        return pa.array(out, t)
    return pc.cast(text, t)


def _duckdb_cast(text: pa.Array, sql_type: str) -> pa.Array:
    import duckdb

    con = duckdb.connect()
    try:
        con.register("v", pa.table({"v": text}))
        return con.sql(f"SELECT CAST(v AS {sql_type}) AS v FROM v").to_arrow_table().column(0) \
            .combine_chunks()
    finally:
        con.close()


def _bytea(v: str) -> bytes:
    if v.startswith("\\x"):
        return bytes.fromhex(v[2:])
    raise ValueError("bytea is not in hex output format (set bytea_output = 'hex')")


def parse_array(text: str) -> list[str | None]:
    """A one-dimensional PostgreSQL array literal (``{1,NULL,"a \\"b\\""}``) as a list of
    text values (None for NULL)."""
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"not an array literal: {text[:40]!r}")
    body, i = text[1:-1], 0
    out: list[str | None] = []
    if not body:
        return out
    while i <= len(body):
        if i < len(body) and body[i] == "{":
            raise ValueError("multi-dimensional arrays are not supported")
        if i < len(body) and body[i] == '"':
            i += 1
            chars = []
            while body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i])
                i += 1
            out.append("".join(chars))
            i += 2  # the closing quote and the comma
        else:
            end = body.find(",", i)
            end = len(body) if end < 0 else end
            item = body[i:end]
            out.append(None if item == "NULL" else item)
            i = end + 1
    return out

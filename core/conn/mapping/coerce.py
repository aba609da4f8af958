"""Coercing computed columns to a destination field's JSON Schema type, vectorised.

Every coercion returns the converted array and a mask of values that could not be
converted (non-null in, null out): those rows are rejected with a reason, never sent as
null. Conversions are total over types Arrow can convert at all; for types it cannot
(a list into an integer field), pyarrow raises on the empty probe batch the mapper
builds at start-up, so an impossible cast is a configuration error before any row moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.mapping.carry import temporal_out_of_range

_INT = r"^\s*[+-]?[0-9]{1,18}\s*$"
_NUM = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_TRUE = pa.array(["true", "t", "yes", "y", "1"])
_FALSE = pa.array(["false", "f", "no", "n", "0"])


def json_type(prop: Mapping[str, Any] | None) -> str | None:
    """The first non-null JSON type of a property schema (None when untyped)."""
    if not prop:
        return None
    t = prop.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    return t


def _is_str(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _failed(before: pa.Array, after: pa.Array) -> np.ndarray:
    bad = pc.and_(pc.is_valid(before), pc.is_null(after))
    return np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool)


def _where(arr: pa.Array, cond: pa.Array, t: pa.DataType) -> pa.Array:
    return pc.if_else(pc.fill_null(cond, False), arr, pa.scalar(None, arr.type)).cast(t)


def to_integer(arr: pa.Array) -> pa.Array:
    """int64; strings must look like integers, floats must be whole."""
    t = arr.type
    if pa.types.is_int64(t):
        return arr
    if _is_str(t):
        # Arrow's int64 parser refuses a leading '+', which the documented spelling allows.
        s = pc.replace_substring_regex(pc.utf8_trim_whitespace(arr), r"^\+", "")
        return _where(s, pc.match_substring_regex(arr, _INT), pa.int64())
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        whole = pc.and_(pc.equal(pc.floor(arr), arr),
                        pc.less_equal(pc.abs(arr), 9.007e15))
        return _where(arr, whole, pa.float64()).cast(pa.int64())
    if pa.types.is_boolean(t):
        return arr.cast(pa.int64())
    if pa.types.is_uint64(t):
        return _where(arr, pc.less_equal(arr, 2**63 - 1), pa.uint64()).cast(pa.int64())
    return arr.cast(pa.int64())


def to_number(arr: pa.Array) -> pa.Array:
    """float64; strings must look like numbers."""
    if pa.types.is_float64(arr.type):
        return arr
    if _is_str(arr.type):
        return _where(pc.utf8_trim_whitespace(arr), pc.match_substring_regex(arr, _NUM),
                      pa.float64())
    return arr.cast(pa.float64())


def to_boolean(arr: pa.Array) -> pa.Array:
    """bool; strings true/false/yes/no/1/0, numbers 1/0."""
    t = arr.type
    if pa.types.is_boolean(t):
        return arr
    if _is_str(t):
        s = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        yes, no = pc.is_in(s, value_set=_TRUE), pc.is_in(s, value_set=_FALSE)
        return pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        one, zero = pc.equal(arr, 1), pc.equal(arr, 0)
        return pc.if_else(one, True, pc.if_else(zero, False, pa.scalar(None, pa.bool_())))
    return arr.cast(pa.bool_())


def _in_years(arr: pa.Array) -> pa.Array:
    """``arr`` with dates and timestamps outside the years 0001-9999 made null: no text
    form (and no µs timestamp, for far dates) holds them, so the caller rejects them."""
    bad = temporal_out_of_range(arr)
    if bad is None or not bad.any():
        return arr
    return pc.if_else(pa.array(bad), pa.scalar(None, arr.type), arr)


def to_timestamp(arr: pa.Array) -> pa.Array:
    """Timestamp (µs); ISO 8601 strings parsed, dates widened."""
    t = arr.type
    if pa.types.is_timestamp(t):
        return arr
    if pa.types.is_date(t):
        return _in_years(arr).cast(pa.timestamp("us"))
    if _is_str(t):
        s = pc.utf8_trim_whitespace(arr)
        out = pc.strptime(s, format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=True)
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            out = pc.coalesce(out, pc.strptime(s, format=fmt, unit="us", error_is_null=True))
        return out
    return arr.cast(pa.timestamp("us"))


def to_date(arr: pa.Array) -> pa.Array:
    """date32 from dates, timestamps or ``YYYY-MM-DD`` strings."""
    if pa.types.is_date32(arr.type):
        return arr
    return to_timestamp(arr).cast(pa.date32())


def to_string(arr: pa.Array, fmt: str | None = None) -> pa.Array:
    """String; dates and timestamps in ISO 8601 (``date`` / ``date-time`` formats)."""
    t = arr.type
    if _is_str(t):
        return arr.cast(pa.string())
    if pa.types.is_temporal(t) and (pa.types.is_date(t) or pa.types.is_timestamp(t)):
        arr = _in_years(arr)
        if fmt == "date" or pa.types.is_date(t):
            return pc.strftime(arr, format="%Y-%m-%d")
        # RFC 3339 in UTC; naive timestamps are taken as UTC.
        utc = arr.cast(pa.timestamp(t.unit, "UTC")) if t.tz else arr
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")
    if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise pa.ArrowNotImplementedError(f"cannot turn {t} into a string")
    return arr.cast(pa.string())


def cast_named(arr: pa.Array, name: str) -> tuple[pa.Array, np.ndarray]:
    """A mapping's ``cast:`` (string, integer, number, boolean, date, datetime)."""
    fn = {"string": to_string, "integer": to_integer, "number": to_number,
          "boolean": to_boolean, "date": to_date, "datetime": to_timestamp}[name]
    out = fn(arr)
    return out, _failed(arr, out)


def coerce(arr: pa.Array, prop: Mapping[str, Any] | None) -> tuple[pa.Array, np.ndarray]:
    """Coerce to the field's JSON Schema type; returns (array, failed mask)."""
    jt = json_type(prop)
    if jt is None or jt in ("array", "object"):
        return arr, np.zeros(len(arr), dtype=bool)
    if jt == "string":
        fmt = (prop or {}).get("format")
        src = arr
        if fmt == "date" and _is_str(arr.type):
            return arr.cast(pa.string()), np.zeros(len(arr), dtype=bool)
        out = to_string(src, fmt)
        return out, _failed(src, out)
    fn = {"integer": to_integer, "number": to_number, "boolean": to_boolean}.get(jt)
    if fn is None:
        return arr, np.zeros(len(arr), dtype=bool)
    out = fn(arr)
    return out, _failed(arr, out)

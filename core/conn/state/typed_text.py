"""Typed values stored as text, exactly reversible: match values and primary keys.

State stores keep a record's match value (and its primary key) as text, next to a *type
token* naming the Arrow type the destination received. A delete then carries the match
value with that same type (``2``, not ``"2"``), so a destination keyed on the JSON value,
a typed database column or a Singer target with an integer key finds the record again.

The token is the type's own name where Arrow reads it back (``int64``, ``string``,
``timestamp[us]``) and ``arrow:<base64 IPC schema>`` otherwise (time zones, decimals), so
any type round-trips. Text is Arrow's own cast to string and back, which is exact for the
types a match key can have (integers, strings, floats, decimals, dates, timestamps,
booleans); binary values are stored as base64.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.errors import ConfigError

#: Token of values stored before types were recorded: they were stored as text.
LEGACY = None
_IPC = "arrow:"


@functools.lru_cache(maxsize=256)
def type_token(t: pa.DataType) -> str:
    """The text naming ``t`` in state (see the module docstring)."""
    name = str(t)
    try:
        if pa.type_for_alias(name) == t:
            return name
    except (ValueError, KeyError):
        pass
    schema = pa.schema([pa.field("v", t)])
    return _IPC + base64.b64encode(schema.serialize().to_pybytes()).decode()


@functools.lru_cache(maxsize=256)
def token_type(token: str) -> pa.DataType:
    """The Arrow type a :func:`type_token` names."""
    if token.startswith(_IPC):
        buf = pa.py_buffer(base64.b64decode(token[len(_IPC):]))
        return pa.ipc.read_schema(buf).field(0).type
    return pa.type_for_alias(token)


def _is_binary(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t))


def check_storable(t: pa.DataType, what: str) -> None:
    """Raise :class:`ConfigError` unless values of type ``t`` can be stored exactly."""
    if _is_binary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return
    if isinstance(t, pa.DictionaryType):
        check_storable(t.value_type, what)
        return
    probe = pa.nulls(1, t)
    try:
        pc.cast(pc.cast(probe, pa.string()), t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ConfigError(f"{what} has type {t}, which conn cannot store and send back "
                          "exactly (use a string, number, decimal, date or timestamp "
                          "field)") from None


def to_text(values: pa.Array) -> tuple[pa.Array, str]:
    """``values`` as text, and the token of their type."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    t = values.type
    if isinstance(t, pa.DictionaryType):
        values = values.dictionary_decode()
        t = values.type
    token = type_token(t)
    if pa.types.is_string(t):
        return values, token
    if pa.types.is_large_string(t):
        return values.cast(pa.string()), token
    if _is_binary(t):
        return _base64(values), token
    return pc.cast(values, pa.string()), token


def from_text(text: pa.Array, token: str | None) -> pa.Array:
    """Values stored by :func:`to_text` back with their type (text for ``LEGACY``)."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not pa.types.is_string(text.type):
        text = text.cast(pa.string())
    if token is LEGACY:
        return text
    t = token_type(token)
    if pa.types.is_string(t):
        return text
    if _is_binary(t):
        return _unbase64(text).cast(t)
    return pc.cast(text, t)


def _duckdb(sql: str, values: pa.Array) -> pa.Array:
    import duckdb

    with duckdb.connect() as con:
        con.register("_v", pa.table({"v": values}))
        return con.sql(sql).to_arrow_table().column(0).combine_chunks()


def _base64(values: pa.Array) -> pa.Array:
    return _duckdb("SELECT to_base64(v) FROM _v", values.cast(pa.binary())).cast(pa.string())


def _unbase64(text: pa.Array) -> pa.Array:
    return _duckdb("SELECT from_base64(v) FROM _v", text).cast(pa.binary())


def decode_groups(text: pa.Array, tokens: pa.Array, legacy: str | None = LEGACY
                  ) -> list[tuple[pa.Array, pa.Array]]:
    """Split stored values by their type token: ``[(row indices, typed values), ...]``.

    Values stored without a token (by a conn that kept text only) are read with the
    ``legacy`` token when given and when they all parse as that type (the sync's match
    field type today: what the destination most likely holds), else as text."""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    out = []
    for tok in pc.unique(tokens).to_pylist():
        mask = pc.is_null(tokens) if tok is None else pc.equal(tokens, tok)
        idx = pc.indices_nonzero(mask)
        part = text if len(idx) == len(text) else text.take(idx)
        if tok is None and legacy is not None:
            try:
                out.append((idx, from_text(part, legacy)))
                continue
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        out.append((idx, from_text(part, tok)))
    return out


def value_of(text: str | None, token: str | None) -> Any:
    """One stored value back with its type (for reports; :func:`from_text` for arrays)."""
    if text is None:
        return None
    return from_text(pa.array([text], pa.string()), token)[0].as_py()

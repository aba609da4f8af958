"""Rows from message queues: a declared stream schema and JSON messages decoded into Arrow.

A queue source (NATS JetStream, RabbitMQ, Redis Streams, ...) carries one JSON object per
message. Its config declares the stream's columns and primary key (:data:`STREAM_SCHEMA`,
checked by :func:`declared_stream`); :func:`decode_json` turns a run of message payloads
into one Arrow batch of those columns, listing the messages that are not a JSON object of
them as (identifier, reason), so the runtime records them as rejections instead of
dropping them (see :class:`conn.streaming.ChangeBatch`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

#: Column types a message stream can declare, and their Arrow types (names, for laziness).
TYPES = {
    "string": "string", "integer": "int64", "number": "float64", "boolean": "bool",
    "timestamp": "timestamp", "date": "date32",
}

#: JSON Schema of a declared stream (``columns`` and ``primary_key``), for plugin configs.
STREAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["columns", "primary_key"],
    "additionalProperties": False,
    "properties": {
        "columns": {
            "type": "object", "minProperties": 1,
            "additionalProperties": {"enum": list(TYPES)},
            "description": "column name -> type (string, integer, number, boolean, "
                           "timestamp, date): the message's fields read as rows; "
                           "other fields are ignored, missing ones are null",
        },
        "primary_key": {
            "description": "the column(s) identifying a row (a key seen again updates it)",
            "oneOf": [{"type": "string", "minLength": 1},
                      {"type": "array", "minItems": 1,
                       "items": {"type": "string", "minLength": 1}}],
        },
    },
}


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    if name == "timestamp":
        return pa.timestamp("us", tz="UTC")
    return pa.type_for_alias(TYPES[name])


def declared_stream(spec: Mapping[str, Any], *, path: str) -> tuple[pa.Schema, tuple[str, ...]]:
    """The Arrow schema and primary key a config declares (``spec`` follows
    :data:`STREAM_SCHEMA`); a :class:`ConfigError` at ``path`` when the key names no
    declared column or a type is unknown."""
    import pyarrow as pa

    columns = spec.get("columns") or {}
    if not isinstance(columns, Mapping) or not columns:
        raise ConfigError("expected 'columns': a mapping of column name to type",
                          path=f"{path}.columns")
    for col, kind in columns.items():
        if kind not in TYPES:
            raise ConfigError(f"column {col!r}: unknown type {kind!r} (expected one of "
                              f"{', '.join(TYPES)})", path=f"{path}.columns.{col}")
    pk = spec.get("primary_key")
    key = (pk,) if isinstance(pk, str) else tuple(pk or ())
    if not key:
        raise ConfigError("expected 'primary_key': a column name or a list of them",
                          path=f"{path}.primary_key")
    missing = [k for k in key if k not in columns]
    if missing:
        raise ConfigError(f"primary key column(s) {missing} are not among the declared "
                          f"columns ({', '.join(columns)})", path=f"{path}.primary_key")
    schema = pa.schema([pa.field(c, _arrow_type(t), nullable=c not in key)
                        for c, t in columns.items()])
    return schema, key


def decode_json(payloads: Sequence[bytes], ids: Sequence[str], schema: pa.Schema
                ) -> tuple[pa.RecordBatch, list[tuple[str, str]]]:
    """Decode one JSON object per payload into a batch of ``schema``'s columns (in
    order; fields not declared are ignored). Payloads that are not such an object are
    left out and returned as (id, reason). The common case (every payload fine) is one
    vectorised ``pyarrow.json`` read; only a failing run is decoded message by message
    to find the culprits."""
    import pyarrow as pa

    if not payloads:
        return pa.RecordBatch.from_pylist([], schema=schema), []
    # One JSON document per line: a payload holding a newline (pretty-printed JSON) is
    # read on its own, so it cannot be mistaken for several rows.
    if not any(b"\n" in p or b"\r" in p for p in payloads):
        try:
            return _read(b"\n".join(payloads), schema, len(payloads)), []
        except (pa.ArrowInvalid, ValueError):
            pass
    good: list[pa.RecordBatch] = []
    rejected: list[tuple[str, str]] = []
    for mid, payload in zip(ids, payloads, strict=True):
        reason = _invalid(payload, schema)
        if reason:
            rejected.append((mid, reason))
            continue
        compact = json.dumps(json.loads(payload), separators=(",", ":")).encode()
        try:
            good.append(_read(compact, schema, 1))
        except (pa.ArrowInvalid, ValueError) as exc:
            rejected.append((mid, f"message does not fit the declared columns: {exc}"))
    if not good:
        return pa.RecordBatch.from_pylist([], schema=schema), rejected
    return pa.Table.from_batches(good, schema).combine_chunks().to_batches()[0], rejected


def _invalid(payload: bytes, schema: pa.Schema) -> str | None:
    """Why ``payload`` is not a JSON object (None when it is)."""
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        return f"message is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return f"message is JSON but not an object (got {type(value).__name__})"
    return None


def _read(data: bytes, schema: pa.Schema, rows: int) -> pa.RecordBatch:
    """Newline-delimited JSON objects read as ``schema`` (extra fields ignored)."""
    import pyarrow as pa
    import pyarrow.json as pj

    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    table = pj.read_json(pa.BufferReader(data), parse_options=opts,
                         read_options=pj.ReadOptions(block_size=max(1 << 20, len(data) + 1)))
    if table.num_rows != rows:
        raise ValueError(f"{table.num_rows} rows decoded from {rows} messages")
    table = table.select(schema.names).cast(schema)
    if not table.num_rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    return table.combine_chunks().to_batches()[0]

"""Primary keys as one string column, vectorised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.errors import ConfigError

#: Separator between the parts of a composite key (unit separator: never in real keys).
KEY_SEPARATOR = "\x1f"


def key_array(batch: pa.RecordBatch, primary_key: Sequence[str]) -> pa.Array:
    """The primary key of every row as a string; null when any part is null."""
    if not primary_key:
        raise ConfigError("a primary key is required to plan changes (set 'primary_key')")
    parts = []
    for col in primary_key:
        arr = batch.column(col)
        if not pa.types.is_string(arr.type):
            arr = pc.cast(arr, pa.string())
        parts.append(arr)
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, KEY_SEPARATOR)


def typed_keys(keys: list[str | None], key_types: pa.Schema | None) -> list[Any]:
    """Stored key strings shown with their type again: the value for a one-column key
    (``2``, not ``"2"``), ``{column: value}`` for a composite key; the text as it is when
    the types are unknown or a key does not parse as them."""
    from conn.state.typed_text import from_text, type_token

    if key_types is None or not len(key_types) or not keys:
        return list(keys)
    if len(key_types) == 1:
        try:
            return from_text(pa.array(keys, pa.string()),
                             type_token(key_types.field(0).type)).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return list(keys)
    out: list[Any] = []
    for key in keys:
        parts = None if key is None else key.split(KEY_SEPARATOR)
        if parts is None or len(parts) != len(key_types):
            out.append(key)
            continue
        row: dict[str, Any] = {}
        for f, part in zip(key_types, parts, strict=True):
            try:
                row[f.name] = from_text(pa.array([part], pa.string()),
                                        type_token(f.type)).to_pylist()[0]
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                row[f.name] = part
        out.append(row)
    return out

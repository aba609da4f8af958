"""Primary keys as one string column, vectorised."""

from __future__ import annotations

from collections.abc import Sequence

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

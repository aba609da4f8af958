"""Drive a source or destination the way the runtime does, without a project file.

Writes go through the same consent gate and delivery path as ``conn sync`` (a destination
with no declared purposes, so every row passes), so plugin tests exercise the real
runtime entry point :meth:`~conn.destination.Destination.write`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from conn.destination import Destination, Operation, WriteResult
from conn.runtime import delivery
from conn.runtime.batches import seal_gated, seal_mapped
from conn.source import Source, SourceState


def to_batch(records: pa.Table | pa.RecordBatch | Iterable[Mapping[str, Any]],
             schema: pa.Schema | None = None) -> pa.RecordBatch:
    """Turn a table, batch or list of dicts into one record batch."""
    if isinstance(records, pa.RecordBatch):
        return records
    if isinstance(records, pa.Table):
        return records.combine_chunks().to_batches()[0] if records.num_rows else \
            pa.RecordBatch.from_pylist([], schema=records.schema)
    rows = list(records)
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def write_records(dest: Destination, object_name: str, records: Any, *,
                  operation: Operation = "upsert", match_key: str | None = None,
                  sync: str = "test") -> WriteResult:
    """Write records to ``dest`` through the runtime's delivery path."""
    obj = dest.object(object_name)
    key = match_key or obj.identifiers[0]
    batch = to_batch(records)
    if operation == "delete":
        req = delivery.delete_request(sync, obj, batch.select([key]), key)
        return dest.write(req)
    keys = pa.array([str(i) for i in range(batch.num_rows)], pa.string())
    gated = seal_gated(batch, keys, 0)
    mapped = seal_mapped(gated, batch, keys)
    return dest.write(delivery.request_from_plan(sync, obj, operation, mapped, None, key))


def read_all(source: Source, stream: str, state: Any = None,
             batch_rows: int | None = None) -> tuple[pa.Table, list[Any]]:
    """Read a whole stream; returns the table and the bookmarks the source yielded."""
    info = source.stream(stream)
    batches, states = [], []
    for item in source.read(info, state, batch_rows):
        if isinstance(item, SourceState):
            states.append(item.value)
        else:
            batches.append(item)
    table = pa.Table.from_batches(batches, schema=batches[0].schema if batches else
                                  info.schema)
    return table, states

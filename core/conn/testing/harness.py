"""Drive a source or destination the way the runtime does, without a project file.

Writes go through the same consent seal and delivery path as ``conn sync`` (a
destination with no declared purposes, so every row passes), so plugin tests exercise
the real runtime entry point :meth:`~conn.destination.Destination.write`;
:func:`make_request` builds the request itself (for ``write_batch`` or
``describe_requests``), so no test needs the runtime's private seals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from conn.destination import Destination, Operation, WriteRequest, WriteResult
from conn.pipeline import seal_gated, seal_mapped
from conn.runtime import delivery
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


def payload_hashes(batch: pa.RecordBatch) -> pa.Array:
    """A 64-bit hash of each record's values (what the planner's payload hash stands for
    in a test: equal records, equal hashes)."""
    rows = batch.to_pylist()
    return pa.array([int.from_bytes(hashlib.blake2b(
        json.dumps(r, sort_keys=True, default=str).encode(), digest_size=8).digest(), "big")
        for r in rows], pa.uint64())


def make_request(dest: Destination, object: str, records: Any,
                 operation: Operation = "upsert", dry_run: bool = False, *,
                 match_key: str | None = None, sync: str = "test",
                 keys: Iterable[Any] | None = None,
                 previous: Iterable[int | None] | None = None) -> WriteRequest:
    """A :class:`~conn.destination.WriteRequest` as the runtime builds it, for
    :meth:`~conn.destination.Destination.write_batch`, ``describe_requests`` or
    :meth:`~conn.destination.Destination.write` in a plugin's tests.

    The records go through the same consent seal and delivery module as in ``conn
    sync`` (a destination with no declared purposes: every row passes). ``records`` is a
    list of dicts, a record batch or a table of the object's fields; a ``delete`` needs
    only the match key (``match_key``, default the object's first identifier), other
    columns are dropped (likewise for ``erase``). The request carries an idempotency basis, so
    ``request.idempotency_keys()`` works: ``keys`` are the records' primary keys (default
    the match key's values), ``previous`` the payload hashes acknowledged before (default
    none: a first delivery).
    """
    obj = dest.object(object)
    key = match_key or obj.identifiers[0]
    batch = to_batch(records)
    n = batch.num_rows
    if keys is None:
        key_values = batch.column(key).cast(pa.string()) if key in batch.schema.names else \
            pa.array([str(i) for i in range(n)], pa.string())
    else:
        key_values = pa.array([None if k is None else str(k) for k in keys], pa.string())
    if len(key_values) != n:
        raise ValueError(f"{len(key_values)} keys for {n} records")
    prev = pa.nulls(n, pa.uint64()) if previous is None else pa.array(list(previous),
                                                                      pa.uint64())
    if operation in ("delete", "erase"):
        return delivery.delete_request(sync, obj, batch.select([key]), key, dry_run,
                                       basis=delivery.basis(key_values, None, prev),
                                       operation=operation)
    row_keys = pa.array([str(i) for i in range(n)], pa.string())
    mapped = seal_mapped(seal_gated(batch, row_keys, 0), batch, row_keys)
    return delivery.request_from_plan(
        sync, obj, operation, mapped, None, key, dry_run,
        basis=delivery.basis(key_values, payload_hashes(batch), prev))


def event_batch(records: Any, name: str = "conn_test_event",
                occurred_at: Any = "2026-01-01T00:00:00+00:00") -> pa.RecordBatch:
    """``records`` as the mapper hands them in ``mode: events`` (:mod:`conn.events`):
    with the event's name and time in the reserved fields, for a ``make_request`` or
    ``write_records`` with ``operation="event"``. ``occurred_at``: a datetime or ISO
    8601 text, the same for every record."""
    import datetime as dt

    from conn.events import NAME_FIELD, TIME_FIELD

    batch = to_batch(records)
    when = occurred_at if isinstance(occurred_at, dt.datetime) else \
        dt.datetime.fromisoformat(str(occurred_at))
    n = batch.num_rows
    return batch.append_column(NAME_FIELD, pa.array([name] * n, pa.string())) \
        .append_column(TIME_FIELD, pa.array([when] * n, pa.timestamp("us", tz="UTC")))


def write_records(dest: Destination, object_name: str, records: Any, *,
                  operation: Operation = "upsert", match_key: str | None = None,
                  sync: str = "test") -> WriteResult:
    """Write records to ``dest`` through the runtime's delivery path (see
    :func:`make_request`) and return the outcome of all of them."""
    return dest.write(make_request(dest, object_name, records, operation,
                                   match_key=match_key, sync=sync))


def merge_records(dest: Destination, object_name: str, absorbed: Iterable[Any],
                  survivors: Iterable[Any], *, match_key: str | None = None,
                  sync: str = "test") -> WriteResult:
    """Merge records of ``dest`` pairwise (``absorbed[i]`` into ``survivors[i]``, match
    values of ``match_key``, default the object's first identifier) through the
    runtime's delivery path, as a sync over a profile set does after a merge (the
    object must declare ``merges``; see
    :meth:`~conn.destination.Destination.merge_batch`), and return the outcome per
    pair."""
    obj = dest.object(object_name)
    key = match_key or obj.identifiers[0]
    a, s = pa.array(list(absorbed)), pa.array(list(survivors))
    keys = a.cast(pa.string())
    request = delivery.merge_request(sync, obj, a, s.cast(a.type), key,
                                     basis=delivery.basis(keys, None,
                                                          pa.nulls(len(a), pa.uint64())))
    return dest.write(request)


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

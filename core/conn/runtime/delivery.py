"""Builds the :class:`~conn.destination.WriteRequest`s destinations receive, and checks
them on arrival. The seal lives here; nothing else can make a valid request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conn.errors import ConnError
from conn.runtime.batches import MappedBatch, is_mapped

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.destination import ObjectInfo, Operation, WriteRequest

_SEAL = object()


class UngatedWrite(ConnError):
    """A write request that did not come through the consent gate and the mapper."""


def basis(keys: pa.Array, hashes: pa.Array | None, previous: pa.Array) -> pa.RecordBatch:
    """What a request's idempotency keys derive from (see :mod:`conn.idempotency`): each
    record's primary key, payload hash (none for deletes) and previously acknowledged
    hash."""
    import pyarrow as pa

    n = len(keys)
    return pa.RecordBatch.from_pydict({
        "key": keys, "hash": hashes if hashes is not None else pa.nulls(n, pa.uint64()),
        "previous": previous})


def request_from_plan(sync: str, obj: ObjectInfo, operation: Operation, mapped: MappedBatch,
                      indices: pa.Array | None, match_key: str, dry_run: bool = False,
                      *, basis: pa.RecordBatch | None = None) -> WriteRequest:
    """A request for rows ``indices`` of a mapped batch (all rows when None). ``basis``
    (aligned with the request's rows) gives the records' idempotency keys."""
    from conn.destination import WriteRequest

    if not is_mapped(mapped):
        raise UngatedWrite("write requests are built only from mapped, consent-gated batches")
    records = mapped.batch if indices is None else mapped.batch.take(indices)
    return WriteRequest(sync, obj, operation, records, match_key, dry_run, _SEAL,
                        basis=basis)


def delete_request(sync: str, obj: ObjectInfo, match_values: pa.RecordBatch, match_key: str,
                   dry_run: bool = False, *, basis: pa.RecordBatch | None = None
                   ) -> WriteRequest:
    """A delete request: carries only the match key of records the destination already
    holds (deleting is what a withdrawal of consent requires, so it needs no gate)."""
    from conn.destination import WriteRequest

    if match_values.num_columns != 1 or match_values.schema.names[0] != match_key:
        raise UngatedWrite("a delete request carries only the match key column")
    return WriteRequest(sync, obj, "delete", match_values, match_key, dry_run, _SEAL,
                        basis=basis)


def verify(request: WriteRequest) -> None:
    """Raise :class:`UngatedWrite` unless ``request`` was built here."""
    if getattr(request, "_seal", None) is not _SEAL:
        raise UngatedWrite(
            "destination received a write request that did not come from the runtime; "
            "records reach destinations only through the consent gate"
        )

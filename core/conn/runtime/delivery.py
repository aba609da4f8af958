"""Deliveries: the :class:`~conn.pipeline.WriteRequest`s destinations receive (from a
mapped, consent-gated batch, or for deletes from the match values a destination
acknowledged), what the delivery lane needs to send one batch, and the answers it gets
back request by request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from conn.destination import ChunkResult, WriteResult
from conn.pipeline import (
    MERGE_INTO,
    MappedBatch,
    UngatedWrite,
    WriteRequest,
    is_mapped,
    seal_request,
)
from conn.state.planner import REASON_NULL

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from conn.destination import Destination, ObjectInfo, Operation
    from conn.runtime.report import SyncReport
    from conn.state import SyncState

__all__ = ["BatchDelivery", "Removed", "UngatedWrite", "ack_mask", "answered_rows", "basis",
           "delete_request", "merge_request", "merged_result", "rejections", "remove",
           "request_from_plan"]


def basis(keys: pa.Array, hashes: pa.Array | None, previous: pa.Array) -> pa.RecordBatch:
    """What a request's idempotency keys derive from (see :mod:`conn.idempotency`): each
    record's primary key, payload hash (none for deletes) and previously acknowledged
    hash."""
    n = len(keys)
    return pa.RecordBatch.from_pydict({
        "key": keys, "hash": hashes if hashes is not None else pa.nulls(n, pa.uint64()),
        "previous": previous})


def request_from_plan(sync: str, obj: ObjectInfo, operation: Operation, mapped: MappedBatch,
                      indices: pa.Array | None, match_key: str, dry_run: bool = False,
                      *, basis: pa.RecordBatch | None = None) -> WriteRequest:
    """A request for rows ``indices`` of a mapped batch (all rows when None). ``basis``
    (aligned with the request's rows) gives the records' idempotency keys."""
    if not is_mapped(mapped):
        raise UngatedWrite("write requests are built only from mapped, consent-gated batches")
    records = mapped.batch if indices is None else mapped.batch.take(indices)
    return seal_request(sync, obj, operation, records, match_key, dry_run, basis=basis)


def delete_request(sync: str, obj: ObjectInfo, match_values: pa.RecordBatch, match_key: str,
                   dry_run: bool = False, *, basis: pa.RecordBatch | None = None,
                   operation: Operation = "delete") -> WriteRequest:
    """A delete (or ``erase``) request: carries only the match key of records the
    destination already holds (deleting is what a withdrawal of consent or an erasure
    requires, so it needs no gate)."""
    if operation not in ("delete", "erase"):
        raise UngatedWrite(f"{operation!r} requests carry records and pass the gate")
    if match_values.num_columns != 1 or match_values.schema.names[0] != match_key:
        raise UngatedWrite(f"{operation!r} requests carry only the match key column")
    return seal_request(sync, obj, operation, match_values, match_key, dry_run, basis=basis)


def merge_request(sync: str, obj: ObjectInfo, absorbed: pa.Array, survivors: pa.Array,
                  match_key: str, dry_run: bool = False, *,
                  basis: pa.RecordBatch | None = None) -> WriteRequest:
    """A ``merge`` request: pairs of match values the destination already holds (each
    absorbed record and the record it folds into), nothing else. The survivor's values
    were sent through the gate; the runtime merges only survivors the gate passed in
    this run (:mod:`conn.runtime.merged`), so a merge carries no row it withheld."""
    if len(absorbed) != len(survivors):
        raise UngatedWrite("a merge request pairs each absorbed record with one survivor")
    batch = pa.RecordBatch.from_arrays([absorbed, survivors], names=[match_key, MERGE_INTO])
    return seal_request(sync, obj, "merge", batch, match_key, dry_run, basis=basis)


@dataclass
class BatchDelivery:
    """What the delivery lane needs to deliver one planned batch: the sync's state, the
    destination, the mapped batch, the rows refused before sending (planner), the
    request (None when nothing is to be sent), how many of its rows are inserts (they
    come first) and updates, the match key, the batch's counts and its start time."""

    state: SyncState
    dest: Destination
    mapped: MappedBatch
    rejected: list[tuple[int, str]]
    request: WriteRequest | None
    inserts: int
    updates: int
    match_key: str
    counts: dict[str, Any]
    t0: float
    #: When a list: the keys the destination acknowledged are appended to it (a
    #: trigger's batch stores what it saw of them, conn.runtime.activation).
    acked: list[pa.Array] | None = None

    def seen(self, keys: pa.Array, acked: pa.Array) -> pa.Array:
        """Note which of ``keys`` were acknowledged (mask ``acked``); return ``acked``."""
        if self.acked is not None:
            self.acked.append(keys.filter(acked))
        return acked


def answered_rows(done: list[ChunkResult]) -> pa.Array:
    """The request rows answered by ``done`` (in order)."""
    if len(done) == 1:
        c = done[0]
        return pa.array(np.arange(c.offset, c.offset + c.length, dtype=np.int64))
    return pa.array(np.concatenate([np.arange(c.offset, c.offset + c.length, dtype=np.int64)
                                    for c in done]))


def merged_result(done: list[ChunkResult]) -> WriteResult:
    """The outcomes of ``done`` as one result over their rows in order."""
    if len(done) == 1:
        return done[0].result
    out, at = WriteResult(), 0
    for c in done:
        out.extend(c.result.shifted(at))
        at += c.length
    return out


def ack_mask(n: int, result: WriteResult) -> pa.Array:
    """Boolean mask of the rows a write acknowledged (neither rejected nor pending)."""
    mask = np.ones(n, dtype=bool)
    if result.rejected:
        mask[[r.index for r in result.rejected]] = False
    if result.pending:
        mask[result.pending] = False
    return pa.array(mask)


def rejections(result: WriteResult) -> tuple[list[tuple[int, str]], dict[int, str]]:
    """A write's rejections as :meth:`SyncState.commit` takes them: (index, reason)
    pairs, and the excerpts of the exchanges that rejected them (index -> JSON text)."""
    from conn.http.exchange import stored

    excerpts = {r.index: stored(r.excerpt) for r in result.rejected if r.excerpt}
    return [(r.index, r.reason) for r in result.rejected], excerpts


def null_key_positions(rejected: list[tuple[int, str]], first_row: int, rows: int
                        ) -> list[tuple[int, str]]:
    """The planner's rejections, with the reason of a row without a primary key saying
    which rows of the run it was read among (it has nothing else to tell it by)."""
    if not any(reason == REASON_NULL for _, reason in rejected):
        return rejected
    where = f" (among rows {first_row + 1}-{first_row + rows} read in this run)"
    return [(i, reason + where if reason == REASON_NULL else reason) for i, reason in rejected]


def every_row(indices: pa.Array, n: int) -> bool:
    """Whether ``indices`` is exactly ``0, 1, ..., n - 1`` (taking them is a no-op)."""
    if len(indices) != n or indices.null_count:
        return False
    return bool(np.array_equal(indices.to_numpy(), np.arange(n, dtype=np.int64)))


@dataclass
class Removed:
    """What a delete or merge request came to: records acknowledged, records left
    pending, and the first error met."""

    acknowledged: int = 0
    pending: int = 0
    error: BaseException | None = None


def remove(dest: Destination, request: WriteRequest, writers: Executor | None,
           st: SyncState, keys: pa.Array, report: SyncReport) -> Removed:
    """Send a delete or merge ``request`` for ``keys`` (in its rows' order): each answer's
    acknowledged keys leave the sync's state as deleted, its rejections are stored with
    them and counted in ``report``."""
    import pyarrow.compute as pc

    out = Removed()
    for done in dest.deliver(request, writers):
        take = answered_rows(done)
        result = merged_result(done)
        acked = ack_mask(len(take), result)
        st.commit_deletes(keys.take(take), acked, *rejections(result))
        out.acknowledged += pc.sum(acked).as_py() or 0
        report.add_rejections([r.reason for r in result.rejected])
        out.pending += len(result.pending)
        out.error = out.error or result.error
    return out

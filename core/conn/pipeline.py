"""What flows through the pipeline, each sealed by the stage that made it.

``GatedBatch`` can only come from the consent gate, ``MappedBatch`` only from the mapper
given a ``GatedBatch``, and a :class:`WriteRequest` only from :func:`seal_request`, which
:mod:`conn.runtime.delivery` calls with a ``MappedBatch`` (or, for deletes, stored match
values). A destination's :meth:`~conn.destination.Destination.deliver` verifies the seal
(:func:`verify`), so no code path hands a destination rows the gate did not pass.

This module is the bottom of the pipeline's layers: the consent gate, the mapper, the
destinations and the runtime import it; it imports none of them.
"""

from __future__ import annotations

import builtins
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from conn import pyvalues
from conn.errors import ConnError

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.destination import ObjectInfo, Operation

_GATE_SEAL = object()
_MAP_SEAL = object()


@dataclass(frozen=True)
class GatedBatch:
    """Rows that passed the consent gate (field policies already applied to tagged source
    columns). ``keys`` are the rows' primary keys as strings."""

    batch: pa.RecordBatch
    keys: pa.Array
    withheld: int = 0
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _GATE_SEAL:
            raise TypeError("GatedBatch can only be created by the consent gate")


@dataclass(frozen=True)
class MappedBatch:
    """Destination-shaped rows derived from a :class:`GatedBatch`; ``keys`` align with
    ``batch``. ``rejected`` holds (key, reason) for rows the mapper refused."""

    batch: pa.RecordBatch
    keys: pa.Array
    rejected: list[tuple[str, str]] = field(default_factory=list)
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _MAP_SEAL:
            raise TypeError("MappedBatch can only be created by the mapper")


def seal_gated(batch: pa.RecordBatch, keys: pa.Array, withheld: int) -> GatedBatch:
    """For the consent gate only."""
    return GatedBatch(batch, keys, withheld, _GATE_SEAL)


def narrow_gated(gated: GatedBatch, keep: pa.Array) -> GatedBatch:
    """The rows of ``gated`` where ``keep`` is true (a holdout's treatment arm): a stage
    after the gate may take rows out of a gated batch, never put any in. ``withheld``
    stays the gate's count."""
    if not isinstance(gated, GatedBatch) or gated._seal is not _GATE_SEAL:
        raise TypeError("only batches from the consent gate can be narrowed")
    if len(keep) != gated.batch.num_rows:
        raise ValueError("the mask must have one value per row of the gated batch")
    return GatedBatch(gated.batch.filter(keep), gated.keys.filter(keep), gated.withheld,
                      _GATE_SEAL)


def seal_mapped(gated: GatedBatch, batch: pa.RecordBatch, keys: pa.Array,
                rejected: list[tuple[str, str]] | None = None) -> MappedBatch:
    """For the mapper only: requires the gated batch it derives from."""
    if not isinstance(gated, GatedBatch) or gated._seal is not _GATE_SEAL:
        raise TypeError("the mapper only accepts batches from the consent gate")
    return MappedBatch(batch, keys, list(rejected or ()), _MAP_SEAL)


def is_mapped(obj: Any) -> bool:
    return isinstance(obj, MappedBatch) and obj._seal is _MAP_SEAL


# --- write requests ---------------------------------------------------------------------

_REQUEST_SEAL = object()

#: The column of a ``merge`` request holding each survivor's match value (next to the
#: match key column, which holds the absorbed records' match values).
MERGE_INTO = "_conn_merge_into"


class UngatedWrite(ConnError):
    """A write request that did not come through the consent gate and the mapper."""


@dataclass(frozen=True)
class WriteRequest:
    """Records to write, created only by the runtime (``conn.runtime.delivery``).

    ``records`` holds mapped destination fields, already consent-gated; ``match_key`` is
    the identifier field; for ``delete`` and ``erase`` (remove the person through the
    vendor's erasure API, :attr:`~conn.destination.Capabilities.erasure`) the batch holds
    only the match key column; for ``merge`` (:meth:`merge_pairs`) the match key column
    (the absorbed records) and :data:`MERGE_INTO` (their survivors).
    """

    sync: str
    object: ObjectInfo
    operation: Operation
    records: pa.RecordBatch
    match_key: str
    dry_run: bool = False
    # builtins.object: in this class body ``object`` names the field above.
    _seal: builtins.object = field(default=None, repr=False, compare=False)
    #: Set by :meth:`Destination.deliver` on each chunk it passes to ``write_batch``: the
    #: chunk's 0-based position, how many chunks the write was split into and how many
    #: rows they hold together. Lets a destination group the calls of one write (e.g. a
    #: vendor upload session with a sequence number and a last-batch flag).
    chunk: int = 0
    chunks: int = 1
    rows_total: int | None = None
    #: Per record: ``key`` (primary key), ``hash`` (payload hash, null for deletes) and
    #: ``previous`` (the hash acknowledged before): what idempotency keys derive from.
    basis: pa.RecordBatch | None = field(default=None, repr=False, compare=False)
    #: The idempotency keys of the request its slices were cut from, computed once for
    #: all of them, and where this one starts in it.
    _keys: _SharedKeys | None = field(default=None, repr=False, compare=False)
    _at: int = field(default=0, repr=False, compare=False)
    #: The records as dicts, shared like ``_keys`` by the slices of one request.
    _rows: _SharedRows | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._keys is None and self.basis is not None:
            object.__setattr__(self, "_keys", _SharedKeys(self))
        if self._rows is None:
            object.__setattr__(self, "_rows", _SharedRows(self.records))

    def __len__(self) -> int:
        return self.records.num_rows

    def slice(self, offset: int, length: int) -> WriteRequest:
        return replace(self, records=self.records.slice(offset, length),
                       basis=None if self.basis is None else self.basis.slice(offset, length),
                       _keys=self._keys, _at=self._at + offset)

    def idempotency_keys(self) -> list[str]:
        """One idempotency key per record (hex), derived from what is sent: the same on
        every retry, in every run and after a crash while the record is unchanged, new
        for every change of it (see :mod:`conn.idempotency`). Send them wherever the
        vendor accepts one (a message id, an event id)."""
        if self.basis is None or self._keys is None:
            raise ConnError("this request carries no idempotency basis (built by hand?)")
        return self._keys.texts(self._at, len(self))

    def idempotency_key(self) -> str:
        """One idempotency key for the whole request (its records' keys in order), for
        APIs that take one per call (``Idempotency-Key``, ``webhook-id``)."""
        from conn.idempotency import request_key

        return request_key(self.idempotency_keys())

    def merge_pairs(self) -> tuple[pa.Array, pa.Array]:
        """A ``merge`` request's pairs: the absorbed records' match values and, aligned,
        the match values of the records they merge into (see
        :meth:`~conn.destination.Destination.merge_batch`)."""
        if self.operation != "merge":
            raise ConnError(f"a {self.operation!r} request holds no merge pairs")
        absorbed = self.records.column(self.match_key)
        return absorbed, self.records.column(MERGE_INTO)

    def to_pylist(self) -> list[dict[str, Any]]:
        """Records as dicts; for API payloads of one request (at most ``batch_size``).
        Null values of fields mapped with ``null: skip`` are left out. Each call gives
        dicts of its own (a destination may change them)."""
        if self._rows is None:
            return records(self.records)
        return self._rows.take(self._at, self.records)


class _SharedRows:
    """The records of a whole request as dicts, made block by block the first time one of
    its slices asks, then handed out slice by slice.

    A destination's writers each ask for their chunk's records (100 of them, say). Made
    per chunk, that is several Arrow calls per request, each releasing the GIL, which
    costs a thread switch whenever the other writers wait for it (a follower's flood
    spent more CPU on those switches than on the records: docs/performance.md,
    ``pg_stream``). Made for :data:`BLOCK` rows at a time, once. A block is dropped once
    all its rows were handed out, so a large request never holds all its dicts; a row
    asked for a second time (the same slice asked twice) is made again, never shared."""

    #: Rows made at once.
    BLOCK = 2048

    def __init__(self, root: pa.RecordBatch) -> None:
        self._root = root
        #: Per block made and not yet handed out whole: its dicts, which of them were
        #: handed out, and how many.
        self._blocks: dict[int, tuple[list[dict[str, Any]], bytearray, list[int]]] = {}
        self._lock = threading.Lock()

    def take(self, at: int, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """The dicts of rows ``at`` to ``at + len(batch)`` of the request (``batch`` is
        those rows: made directly when the request's layout does not match)."""
        n, size, root = batch.num_rows, self.BLOCK, self._root
        if n == 0 or at < 0 or at + n > root.num_rows or batch.schema != root.schema:
            return records(batch)
        out: list[dict[str, Any]] = []
        with self._lock:
            for b in range(at // size, (at + n - 1) // size + 1):
                start = b * size
                lo, hi = max(at, start) - start, min(at + n, start + size) - start
                held = self._blocks.get(b)
                if held is None:
                    rows = records(root.slice(start, size))
                    held = self._blocks[b] = (rows, bytearray(len(rows)), [0])
                rows, handed, count = held
                if any(handed[lo:hi]):  # asked for before: dicts of its own
                    out.extend(records(root.slice(start + lo, hi - lo)))
                    continue
                out.extend(rows[lo:hi])
                handed[lo:hi] = b"\x01" * (hi - lo)
                count[0] += hi - lo
                if count[0] == len(rows):
                    del self._blocks[b]
        return out


class _SharedKeys:
    """The idempotency keys of a whole request, computed the first time one of its slices
    asks (a destination's writers ask at once, on their threads): one vectorised pass
    instead of one per request sent."""

    def __init__(self, root: WriteRequest) -> None:
        self._root: WriteRequest | None = root
        self._value: pa.Array | None = None
        self._texts: list[str] | None = None
        self._lock = threading.Lock()

    def get(self) -> pa.Array:
        with self._lock:
            if self._value is None:
                from conn.idempotency import record_keys

                r = self._root
                assert r is not None and r.basis is not None
                b = r.basis
                removes = r.operation in ("delete", "erase", "merge")
                hashes = None if removes else b.column("hash")
                self._value = record_keys(r.sync, r.object.name, r.operation, b.column("key"),
                                          b.column("previous"), hashes)
                self._root = None
            return self._value

    def texts(self, at: int, n: int) -> list[str]:
        """Keys ``at`` to ``at + n`` as Python strings (made for all of them at once)."""
        if self._texts is None:
            keys = self.get()  # takes the lock itself
            with self._lock:
                if self._texts is None:  # once, whichever writer asks first
                    self._texts = keys.to_pylist()
        return self._texts[at:at + n]


def seal_request(sync: str, obj: ObjectInfo, operation: Operation,
                 records: pa.RecordBatch, match_key: str, dry_run: bool = False, *,
                 basis: pa.RecordBatch | None = None) -> WriteRequest:
    """For :mod:`conn.runtime.delivery` only: a sealed request."""
    return WriteRequest(sync, obj, operation, records, match_key, dry_run, _REQUEST_SEAL,
                        basis=basis)


def verify(request: WriteRequest) -> None:
    """Raise :class:`UngatedWrite` unless ``request`` was sealed by :func:`seal_request`."""
    if getattr(request, "_seal", None) is not _REQUEST_SEAL:
        raise UngatedWrite(
            "destination received a write request that did not come from the runtime; "
            "records reach destinations only through the consent gate"
        )


# --- null handling per field ---------------------------------------------------------------
#
# ``null: send`` (default) or ``null: skip``. Columnar batches always have every field, so
# *skip* is a convention that destinations see: the field of the mapped batch's schema
# carries the metadata ``conn.null = skip``, and a null in such a field means "send no
# value for this field for this record" (do not clear what the destination holds). With
# ``send`` a null is sent as null (clears the value where the API allows). :func:`records`
# builds request payloads that honour it.

NULL_KEY = b"conn.null"
SKIP = b"skip"


def skip_fields(schema: pa.Schema) -> set[str]:
    """Names of fields whose nulls are to be skipped."""
    return {f.name for f in schema if (f.metadata or {}).get(NULL_KEY) == SKIP}


def records(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The batch as dicts, leaving out null values of ``null: skip`` fields (for one
    request's worth of records, as :meth:`WriteRequest.to_pylist`)."""
    rows = pyvalues.records(batch)
    skip = skip_fields(batch.schema)
    if not skip:
        return rows
    return [{k: v for k, v in r.items() if not (v is None and k in skip)} for r in rows]

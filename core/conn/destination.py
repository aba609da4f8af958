"""Base class for destinations, and the data they receive and return.

A destination never builds its own input: the runtime hands it :class:`WriteRequest`s that
only the delivery module can create, after the consent gate, the mapper and the planner.
"""

from __future__ import annotations

import abc
import threading
import typing
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from conn.errors import ConfigError, ConnError
from conn.plugin_base import Connector

if TYPE_CHECKING:
    import pyarrow as pa

#: Sync modes a sync may declare (see docs/sync-modes.md).
MODES = ("upsert", "update", "insert", "mirror", "append")
#: Operations the runtime asks a destination to perform.
Operation = Literal["upsert", "insert", "update", "delete", "append"]


@dataclass(frozen=True)
class RateLimit:
    """A destination's documented request budget: ``requests`` per ``per_seconds``, an
    optional ``burst`` above the steady rate and an optional ``daily`` cap."""

    requests: int
    per_seconds: float = 1.0
    burst: int | None = None
    daily: int | None = None


@dataclass(frozen=True)
class Capabilities:
    """What the runtime may ask of a destination object.

    ``batch_size`` is the most records one :meth:`Destination.write_batch` call takes (the
    API's per-request limit); ``concurrency`` how many calls may run at once; ``modes`` the
    sync modes it supports; ``supports_delete`` whether ``delete`` works (needed by
    ``mirror``). ``values`` says which values its format carries exactly: ``"json"`` (JSON
    or other text; the mapper rejects rows holding NaN, ±Infinity or dates outside the
    years 0001-9999) or ``"arrow"`` (typed columns holding any Arrow value); see
    :mod:`conn.mapping.carry`.
    """

    batch_size: int = 1000
    modes: frozenset[str] = frozenset({"upsert", "insert", "update", "mirror"})
    supports_delete: bool = True
    rate_limit: RateLimit | None = None
    concurrency: int = 1
    values: str = "json"

    def operations(self) -> frozenset[str]:
        ops = set()
        for m in self.modes:
            ops |= {"mirror": {"upsert", "delete"}}.get(m, {m})
        if not self.supports_delete:
            ops.discard("delete")
        return frozenset(ops)


@dataclass(frozen=True)
class ObjectInfo:
    """An object a destination can write (contacts, an audience, a table).

    ``fields`` is a JSON Schema (``type: object``) of the fields it accepts;
    ``identifiers`` the fields that can serve as match key; ``personal`` tags personal
    fields (``{"email": "email"}``) so field policies apply.
    """

    name: str
    fields: Mapping[str, Any]
    identifiers: tuple[str, ...]
    capabilities: Capabilities = field(default_factory=Capabilities)
    personal: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def properties(self) -> Mapping[str, Any]:
        return self.fields.get("properties", {})

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(self.fields.get("required", ()))


@dataclass(frozen=True)
class Rejection:
    """One record the destination refused, with its reason (the vendor's message)."""

    index: int
    reason: str
    retryable: bool = True


@dataclass
class WriteResult:
    """Outcome of one write: rejected rows with reasons and rows left ``pending`` (never
    confirmed, e.g. the request failed midway). Every other row is acknowledged."""

    rejected: list[Rejection] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    #: The exception that left rows pending, if any (the runtime reports it).
    error: BaseException | None = field(default=None, compare=False)

    @classmethod
    def ok(cls) -> WriteResult:
        return cls()

    @classmethod
    def all_pending(cls, n: int) -> WriteResult:
        return cls(pending=list(range(n)))

    @classmethod
    def all_rejected(cls, n: int, reason: str, retryable: bool = True) -> WriteResult:
        return cls(rejected=[Rejection(i, reason, retryable) for i in range(n)])

    def shifted(self, offset: int) -> WriteResult:
        return WriteResult(
            [replace(r, index=r.index + offset) for r in self.rejected],
            [i + offset for i in self.pending],
            self.error,
        )

    def extend(self, other: WriteResult) -> None:
        self.rejected.extend(other.rejected)
        self.pending.extend(other.pending)
        self.error = self.error or other.error


@dataclass(frozen=True)
class WriteRequest:
    """Records to write, created only by the runtime (``conn.runtime.delivery``).

    ``records`` holds mapped destination fields, already consent-gated; ``match_key`` is
    the identifier field; for ``delete`` the batch holds only the match key column.
    """

    sync: str
    object: ObjectInfo
    operation: Operation
    records: pa.RecordBatch
    match_key: str
    dry_run: bool = False
    _seal: object = field(default=None, repr=False, compare=False)
    #: Set by :meth:`Destination.write` on each chunk it passes to ``write_batch``: the
    #: chunk's 0-based position, how many chunks the write was split into and how many
    #: rows they hold together. Lets a destination group the calls of one write (e.g. a
    #: vendor upload session with a sequence number and a last-batch flag).
    chunk: int = 0
    chunks: int = 1
    rows_total: int | None = None

    def __len__(self) -> int:
        return self.records.num_rows

    def slice(self, offset: int, length: int) -> WriteRequest:
        return replace(self, records=self.records.slice(offset, length))

    def to_pylist(self) -> list[dict[str, Any]]:
        """Records as dicts; for API payloads of one request (at most ``batch_size``).
        Null values of fields mapped with ``null: skip`` are left out."""
        from conn.mapping.nulls import records

        return records(self.records)


class Destination(Connector, abc.ABC):
    """A destination plugin. Duties: :meth:`check`, :meth:`objects`, :meth:`write_batch`.
    The runtime calls :meth:`write`, which is final: it verifies the request came through
    the consent gate, enforces the declared capabilities and splits batches to the limit.
    """

    @abc.abstractmethod
    def check(self) -> None:
        """Verify credentials and reachability with one cheap call; raise
        :class:`conn.errors.CheckFailed` with the vendor's reason otherwise."""

    @abc.abstractmethod
    def objects(self) -> list[ObjectInfo]:
        """Return the objects this destination can write, with fields and capabilities."""

    @abc.abstractmethod
    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Perform ``request.operation`` for at most ``capabilities.batch_size`` records.
        Report per-record rejections with reasons; raise :class:`conn.errors.RetryLater`
        (or any exception) if nothing can be confirmed: all rows then stay pending."""

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """For ``--dry-run``: the requests ``write_batch`` would send (method, path,
        body), secrets redacted. Default: the records themselves."""
        return [{"operation": request.operation, "object": request.object.name,
                 "records": request.to_pylist()}]

    @typing.final
    def object(self, name: str) -> ObjectInfo:
        """Find an object by name, with a clear error listing what exists."""
        objs = self.objects()
        for o in objs:
            if o.name == name:
                return o
        known = ", ".join(sorted(o.name for o in objs)) or "none"
        raise ConfigError(
            f"destination {self.instance!r} has no object {name!r} (objects: {known})"
        )

    @typing.final
    def write(self, request: WriteRequest) -> WriteResult:
        """Write a planned batch: the runtime's only way into a destination."""
        from conn.runtime.delivery import verify

        verify(request)
        caps = request.object.capabilities
        if request.operation not in caps.operations():
            raise ConnError(
                f"destination {self.instance!r} object {request.object.name!r} does not "
                f"support {request.operation!r}"
            )
        n = len(request)
        if n == 0:
            return WriteResult.ok()
        size = max(1, caps.batch_size)
        offsets = list(range(0, n, size))
        result = WriteResult()

        failed = threading.Event()

        def one(offset: int) -> WriteResult:
            chunk = replace(request.slice(offset, size), chunk=offset // size,
                            chunks=len(offsets), rows_total=n)
            if failed.is_set():
                # Once a chunk failed, the rest stay pending rather than hammer a
                # destination that is down; the next run resumes with them.
                return WriteResult(pending=list(range(offset, offset + len(chunk))))
            try:
                res = self.write_batch(chunk)
            except Exception as exc:  # the runtime decides what to do; rows stay pending
                res = WriteResult(pending=list(range(len(chunk))), error=exc)
            if res.error is not None:
                failed.set()
            _check_indices(self, res, len(chunk))
            return res.shifted(offset) if offset else res

        if caps.concurrency > 1 and len(offsets) > 1:
            with ThreadPoolExecutor(max_workers=caps.concurrency) as pool:
                parts = list(pool.map(one, offsets))
        else:
            parts = [one(o) for o in offsets]
        for part in parts:
            result.extend(part)
        return result


def _check_indices(dest: Destination, res: WriteResult, n: int) -> None:
    bad = [r.index for r in res.rejected if not 0 <= r.index < n]
    bad += [i for i in res.pending if not 0 <= i < n]
    if bad:
        raise ConnError(
            f"destination {dest.instance!r} reported results for rows outside its batch: "
            f"{bad[:5]}"
        )


def object_schema_errors(obj: ObjectInfo) -> Sequence[str]:
    """Sanity checks a destination's object declaration must pass (conformance suite)."""
    problems = []
    if obj.fields.get("type") != "object":
        problems.append(f"object {obj.name!r}: fields schema must have type 'object'")
    for ident in obj.identifiers:
        if ident not in obj.properties:
            problems.append(f"object {obj.name!r}: identifier {ident!r} is not a field")
    if obj.capabilities.batch_size < 1:
        problems.append(f"object {obj.name!r}: batch_size must be at least 1")
    if obj.capabilities.values not in ("json", "arrow"):
        problems.append(f"object {obj.name!r}: capabilities.values must be 'json' or "
                        f"'arrow', not {obj.capabilities.values!r}")
    return problems

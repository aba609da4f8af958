"""Change streams: the capability a source adds to be followed continuously.

A :class:`~conn.source.Source` that can stream changes (a database's write-ahead log, a
message queue) also inherits :class:`StreamingSource`. The runtime
(:mod:`conn.runtime.streaming`) then reads its :meth:`StreamingSource.changes`, gathers
them into micro-batches, sends each through the same consent gate, mapper, planner and
state as a batch sync, and acknowledges positions back to the source once the
destination acknowledged every change up to them and conn's state committed them.

The contract, in the order things happen:

1. ``changes(stream, position, wait=...)`` yields :class:`ChangeBatch` es: the stream's
   columns plus :data:`OPERATION` (``insert``, ``update``, ``delete``) in the order the
   source committed them, each batch with the position just after its last change. It
   starts after ``position`` (the last one conn stored; ``None``: wherever the source's
   own durable cursor is, e.g. a replication slot's confirmed position). It never blocks
   longer than ``wait`` seconds without yielding: with nothing new it yields an empty
   batch (a heartbeat) carrying the current position, so a quiet stream still lets the
   runtime flush on time and the source still talks to its server.
2. Positions are opaque to conn but JSON-serialisable (they are stored in the sync's
   state) and never go backwards (:meth:`StreamingSource.position_key` orders them).
3. ``acknowledge(position)``: every change up to ``position`` was acknowledged by the
   destination (or rejected, and recorded as such) and committed in conn's state, with
   ``position`` itself. Only then may the source tell its upstream to forget them (a
   slot's flush LSN, a message ack). Called on the thread that iterates ``changes``.
4. A restart calls ``changes`` with the last stored position: the source redelivers
   what was not acknowledged, in the order it first gave it; the planner finds what the
   destination already holds unchanged, so a destination sees again at most the
   requests in flight and those answered but not yet committed, each record under its
   first idempotency key (the
   runtime groups the redelivered changes as far as that micro-batch reached:
   :mod:`conn.runtime.stream_state`).

Deletes carry the primary key; other columns may be null (a source that cannot give
them says so in its docs).

A message the source cannot turn into a row (malformed JSON on a queue) is never dropped
silently: the batch lists it in ``rejected`` as (identifier, reason); the runtime stores it
as a rejection of the sync (``conn rejected``) before the batch's position is saved, so
the source acknowledges it upstream only once it is recorded.
"""

from __future__ import annotations

import abc
import typing
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conn.errors import ConnError

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.source import StreamInfo

#: The column of a change batch saying what happened to the row.
OPERATION = "_conn_operation"
INSERT, UPDATE, DELETE = "insert", "update", "delete"
OPERATIONS = (INSERT, UPDATE, DELETE)


@dataclass(frozen=True)
class ChangeBatch:
    """Changes of one stream in commit order, and the position just after them.

    ``changes`` holds the stream's columns plus :data:`OPERATION` (a string column);
    ``None`` or no rows is a heartbeat: nothing new, the source is at ``position``.
    ``commit_times`` (optional, aligned with ``changes``) are the source's commit times
    in seconds since the epoch, for end-to-end latency figures. ``rejected``: messages
    covered by ``position`` that could not be read as rows, as (identifier, reason) pairs
    (the identifier names the message upstream, e.g. ``"ORDERS#17"``)."""

    changes: pa.RecordBatch | None
    position: Any
    commit_times: pa.Array | None = None
    rejected: tuple[tuple[str, str], ...] = ()

    @property
    def rows(self) -> int:
        """Number of changes (0 for a heartbeat)."""
        return 0 if self.changes is None else self.changes.num_rows


@dataclass(frozen=True)
class SourceLag:
    """How far the acknowledged position is behind the source's newest change:
    ``bytes`` (e.g. of WAL a slot retains), ``seconds`` and/or ``messages`` (a queue's
    messages not yet acknowledged); None when unknown."""

    bytes: int | None = None
    seconds: float | None = None
    messages: int | None = None


class StreamingSource(abc.ABC):
    """Mixin for sources that can be followed (see the module docstring). List it after
    :class:`~conn.source.Source`: ``class MySource(Source, StreamingSource)``."""

    @abc.abstractmethod
    def changes(self, stream: StreamInfo, position: Any | None, *,
                wait: float) -> Iterator[ChangeBatch]:
        """Yield the changes of ``stream`` after ``position`` (None: from the source's
        own acknowledged cursor) until the consumer stops iterating; yield at least every
        ``wait`` seconds (an empty batch when nothing changed). Closing the generator
        ends the stream and releases its connection."""

    @abc.abstractmethod
    def acknowledge(self, position: Any) -> None:
        """Every change up to ``position`` is delivered and committed in conn's state:
        the source may now let its upstream forget them. Never called with a position
        older than one acknowledged before."""

    def lag(self) -> SourceLag:
        """How far behind the acknowledged position is (for metrics); unknown by
        default."""
        return SourceLag()

    @classmethod
    def position_key(cls, position: Any) -> Any:
        """A value ordering positions (later positions compare greater); the position
        itself by default."""
        return position

    @typing.final
    def follow(self, stream: StreamInfo, position: Any | None, *,
               wait: float) -> Generator[ChangeBatch, None, None]:
        """The runtime's entry point: :meth:`changes`, checking that every batch carries
        the stream's columns and a known operation, and that positions do not go back."""
        import pyarrow.compute as pc

        want = set(stream.schema.names) | {OPERATION}
        name = getattr(self, "instance", type(self).__name__)
        last = None if position is None else self.position_key(position)
        for batch in self.changes(stream, position, wait=wait):
            key = self.position_key(batch.position)
            if last is not None and key is not None and key < last:
                raise ConnError(f"source {name!r}: position {batch.position!r} of stream "
                                f"{stream.name!r} is before an earlier one")
            last = key if key is not None else last
            if batch.rows:
                assert batch.changes is not None
                missing = want - set(batch.changes.schema.names)
                if missing:
                    raise ConnError(f"source {name!r} returned changes of stream "
                                    f"{stream.name!r} without column(s) {sorted(missing)}")
                ops = batch.changes.column(OPERATION)
                if not pc.all(pc.is_in(ops, value_set=_ops())).as_py() or ops.null_count:
                    raise ConnError(f"source {name!r}: {OPERATION} must be one of "
                                    f"{', '.join(OPERATIONS)}")
            yield batch


def _ops() -> pa.Array:
    import pyarrow as pa

    return pa.array(OPERATIONS, pa.string())


def is_streaming(source: object) -> bool:
    """Whether ``source`` can be followed."""
    return isinstance(source, StreamingSource)

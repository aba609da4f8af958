"""Base class for sources: anything that yields Arrow record batches for named streams."""

from __future__ import annotations

import abc
import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError, ConnError
from conn.plugin_base import Connector

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class StreamInfo:
    """A stream a source can read: its Arrow schema and primary key.

    ``personal`` tags fields holding personal data (``{"email": "email"}``) so that field
    policies apply to them; ``cursor`` names a column usable for incremental reads.
    """

    name: str
    schema: pa.Schema
    primary_key: tuple[str, ...] = ()
    cursor: str | None = None
    personal: Mapping[str, str] = field(default_factory=dict)
    query: str | None = None

    def narrowed(self, columns: typing.Collection[str]) -> StreamInfo:
        """The same stream with only ``columns`` (in the schema's order), plus its
        primary key and cursor, which a read always needs."""
        keep = set(columns) | set(self.primary_key) | ({self.cursor} if self.cursor else set())
        schema = self.schema
        for i in reversed(range(len(schema))):
            if schema.field(i).name not in keep:
                schema = schema.remove(i)
        return dataclasses.replace(self, schema=schema)


@dataclass(frozen=True)
class SourceState:
    """Yielded by :meth:`Source.read_batches` after the batches it covers: the source's
    bookmark. The runtime stores it only once every earlier batch is acknowledged.

    The runtime keeps reading while earlier batches are still being delivered, so when
    the source resumes after yielding this, the bookmark may not be stored yet. A source
    that must know it is (e.g. to acknowledge upstream) sets ``wait``: the runtime then
    resumes it only after every earlier batch is committed and the bookmark stored (or
    never, if a delivery failed)."""

    value: Any
    wait: bool = False


class Source(Connector, abc.ABC):
    """A source plugin. Duties: :meth:`check`, :meth:`discover`, :meth:`read_batches`;
    optionally :meth:`query_stream` for sources that accept SQL."""

    #: Rows per batch a source should aim for when the user does not say.
    default_batch_rows: typing.ClassVar[int] = 65_536
    #: Whether :meth:`read_batches` reads only the columns of the stream it is given.
    #: The runtime then gives it the stream :meth:`StreamInfo.narrowed` to the columns
    #: the sync uses (key, cursor, consent, mapping), so a wide table is not read whole.
    #: A source that leaves this False gets the full stream; extra columns are fine.
    projection: typing.ClassVar[bool] = False

    @abc.abstractmethod
    def check(self) -> None:
        """Verify the source is reachable with this config; raise
        :class:`conn.errors.CheckFailed` with a clear reason otherwise."""

    @abc.abstractmethod
    def discover(self) -> list[StreamInfo]:
        """Return every stream this source offers, with Arrow schema and primary key."""

    @abc.abstractmethod
    def read_batches(
        self, stream: StreamInfo, state: Any | None, batch_rows: int
    ) -> Iterator[pa.RecordBatch | SourceState]:
        """Yield record batches of ``stream`` (about ``batch_rows`` rows each, bounded
        memory), optionally interleaved with :class:`SourceState` bookmarks. ``state`` is
        the last bookmark stored for this stream, or None for a full read."""

    def query_stream(self, query: str, primary_key: tuple[str, ...]) -> StreamInfo:
        """Describe a stream defined by a query (SQL sources override this)."""
        raise ConfigError(f"source type {self.name!r} does not accept queries; use 'stream:'")

    def sql_relation(self, stream: StreamInfo) -> str | None:
        """Optional, for sources that run DuckDB SQL in :meth:`query_stream`: ``stream``
        as a relation usable in a ``FROM`` clause of such a query (a quoted table name or
        a parenthesised query). Traits over the source's streams then run as one query
        inside the source instead of reading the streams out (docs/traits.md). None (the
        default): the runtime reads the streams and evaluates the query itself."""
        return None

    @typing.final
    def stream(self, name: str | None = None, *, query: str | None = None,
               primary_key: tuple[str, ...] = ()) -> StreamInfo:
        """Resolve a stream by name or query, with a clear error listing what exists."""
        if query is not None:
            return self.query_stream(query, primary_key)
        streams = self.discover()
        for s in streams:
            if s.name == name:
                if primary_key and tuple(primary_key) != s.primary_key:
                    return StreamInfo(s.name, s.schema, tuple(primary_key), s.cursor,
                                      s.personal, s.query)
                return s
        known = ", ".join(sorted(s.name for s in streams)) or "none"
        raise ConfigError(f"source {self.instance!r} has no stream {name!r} (streams: {known})")

    @typing.final
    def read(self, stream: StreamInfo, state: Any | None = None,
             batch_rows: int | None = None) -> Iterator[pa.RecordBatch | SourceState]:
        """Read ``stream``: the runtime's entry point. Checks that every batch carries the
        stream's columns, so a plugin bug surfaces here and not inside a destination."""
        want = set(stream.schema.names)
        for item in self.read_batches(stream, state, batch_rows or self.default_batch_rows):
            if isinstance(item, SourceState):
                yield item
                continue
            missing = want - set(item.schema.names)
            if missing:
                raise ConnError(
                    f"source {self.instance!r} returned a batch of stream {stream.name!r} "
                    f"without column(s) {sorted(missing)}"
                )
            if item.num_rows:
                yield item

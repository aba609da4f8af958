"""A source whose streams are Arrow tables held in this process, for whole-sync tests.

Its config names a *dataset* (``{"dataset": "..."}``), a set of streams registered with
:func:`add_dataset`; :class:`~conn.testing.sync.SyncHarness` does that for you. A stream
with a ``cursor`` reads incrementally (rows whose cursor is above the bookmark), as a
database source does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from conn.errors import CheckFailed, ConfigError
from conn.source import Source, SourceState, StreamInfo
from conn.streaming import ChangeBatch, SourceLag, StreamingSource


@dataclass(frozen=True)
class MemoryStream:
    """One stream: its rows, primary key and optional cursor column."""

    table: pa.Table
    primary_key: tuple[str, ...]
    cursor: str | None = None


_lock = threading.Condition()
_datasets: dict[str, dict[str, MemoryStream]] = {}
#: (dataset, stream) -> change batches (the stream's columns plus conn.streaming.OPERATION)
_feeds: dict[tuple[str, str], list[tuple[pa.RecordBatch, float]]] = {}
#: (dataset, stream) -> the last position acknowledged
_acks: dict[tuple[str, str], int] = {}


def add_dataset(streams: Mapping[str, MemoryStream] | None = None) -> str:
    """Register a dataset of streams (changed later with :func:`set_stream`); returns
    its name, what a :class:`MemorySource` config gives as ``dataset``."""
    name = f"ds-{uuid.uuid4().hex[:12]}"
    with _lock:
        _datasets[name] = dict(streams or {})
    return name


def set_stream(dataset: str, name: str, stream: MemoryStream) -> None:
    """Add or replace a stream of ``dataset`` (the next read sees it)."""
    with _lock:
        _datasets[dataset][name] = stream


def drop_dataset(dataset: str) -> None:
    """Forget a dataset."""
    with _lock:
        _datasets.pop(dataset, None)
        for key in [k for k in _feeds if k[0] == dataset]:
            _feeds.pop(key, None)
            _acks.pop(key, None)


def append_changes(dataset: str, stream: str, changes: pa.RecordBatch) -> int:
    """Append a batch of changes (the stream's columns plus ``_conn_operation``) to the
    change feed of ``stream``; returns the position just after it."""
    with _lock:
        feed = _feeds.setdefault((dataset, stream), [])
        feed.append((changes, time.time()))
        _lock.notify_all()
        return len(feed)


def acknowledged(dataset: str, stream: str) -> int | None:
    """The last position the runtime acknowledged for ``stream`` (None: none yet)."""
    with _lock:
        return _acks.get((dataset, stream))


def _bookmark(value: Any) -> Any:
    """A cursor value as JSON state: numbers stay numbers, dates and times ISO 8601."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class MemorySource(Source, StreamingSource):
    """Streams the Arrow tables of a dataset registered in this process (see
    :func:`add_dataset`); reads only the columns of the stream it is given. Follows the
    change feeds of :func:`append_changes`."""

    name: ClassVar[str] = "memory"
    description: ClassVar[str] = "Arrow tables held in this process (tests)"
    projection: ClassVar[bool] = True
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["dataset"],
        "properties": {"dataset": {"type": "string", "minLength": 1,
                                   "description": "a dataset registered by add_dataset"}},
    }

    def _streams(self) -> dict[str, MemoryStream]:
        with _lock:
            streams = _datasets.get(str(self.config.get("dataset")))
        if streams is None:
            raise CheckFailed(f"source {self.instance!r}: no dataset "
                              f"{self.config.get('dataset')!r} in this process")
        return dict(streams)

    def check(self) -> None:
        self._streams()

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo(name, s.table.schema, s.primary_key, s.cursor)
                for name, s in self._streams().items()]

    def read_batches(self, stream: StreamInfo, state: Any | None, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        import pyarrow.compute as pc

        found = self._streams().get(stream.name)
        if found is None:
            raise ConfigError(f"source {self.instance!r}: no stream {stream.name!r}")
        table = found.table
        cursor = stream.cursor
        if cursor and state is not None:
            bound = pa.scalar(state).cast(table.schema.field(cursor).type)
            table = table.filter(pc.greater(table.column(cursor), bound))
        table = table.select(stream.schema.names)
        yield from table.to_batches(max_chunksize=max(1, batch_rows))
        if cursor and table.num_rows:
            yield SourceState(_bookmark(pc.max(table.column(cursor)).as_py()))

    # --- change feed -----------------------------------------------------------------------

    def _feed_key(self, stream: StreamInfo) -> tuple[str, str]:
        return (str(self.config.get("dataset")), stream.name)

    def changes(self, stream: StreamInfo, position: Any | None, *,
                wait: float) -> Iterator[ChangeBatch]:
        from conn.streaming import OPERATION

        key = self._following = self._feed_key(stream)
        at = int(position or 0)
        columns = [*stream.schema.names, OPERATION]
        while True:
            with _lock:
                feed = _feeds.get(key, [])
                if len(feed) <= at:
                    _lock.wait(wait)
                    feed = _feeds.get(key, [])
                fresh = feed[at:]
            if not fresh:
                yield ChangeBatch(None, at)
                continue
            for batch, appended in fresh:
                at += 1
                yield ChangeBatch(batch.select(columns), at,
                                  pa.array([appended] * batch.num_rows, pa.float64()))

    def acknowledge(self, position: Any) -> None:
        with _lock:
            _acks[self._following] = int(position)

    def lag(self) -> SourceLag:
        return SourceLag()

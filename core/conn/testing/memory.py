"""A source whose streams are Arrow tables held in this process, for whole-sync tests.

Its config names a *dataset* (``{"dataset": "..."}``), a set of streams registered with
:func:`add_dataset`; :class:`~conn.testing.sync.SyncHarness` does that for you. A stream
with a ``cursor`` reads incrementally (rows whose cursor is above the bookmark), as a
database source does.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from conn.errors import CheckFailed, ConfigError
from conn.source import Source, SourceState, StreamInfo


@dataclass(frozen=True)
class MemoryStream:
    """One stream: its rows, primary key and optional cursor column."""

    table: pa.Table
    primary_key: tuple[str, ...]
    cursor: str | None = None


_lock = threading.Lock()
_datasets: dict[str, dict[str, MemoryStream]] = {}


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


def _bookmark(value: Any) -> Any:
    """A cursor value as JSON state: numbers stay numbers, dates and times ISO 8601."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class MemorySource(Source):
    """Streams the Arrow tables of a dataset registered in this process (see
    :func:`add_dataset`); reads only the columns of the stream it is given."""

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

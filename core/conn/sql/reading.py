"""Helpers for SQL sources: choosing streams, incremental reads and bookmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError
from conn.source import SourceState

if TYPE_CHECKING:
    import pyarrow as pa


def select_tables(tables: Sequence[str], wanted: Iterable[str] | None, *, instance: str,
                  where: str = "") -> list[str]:
    """The tables that become streams: all of ``tables``, or only the ``wanted`` ones (the
    config's ``tables``), in ``tables``' order. A wanted table that does not exist is a
    :class:`~conn.errors.ConfigError` (``where`` adds to its message, e.g. the schema)."""
    if not wanted:
        return list(tables)
    wanted = set(wanted)
    missing = sorted(wanted - set(tables))
    if missing:
        raise ConfigError(f"source {instance!r}: no table(s) {missing}{where}",
                          path="config.tables")
    return [t for t in tables if t in wanted]


def stream_options(config: Mapping[str, Any], table: str, columns: Sequence[str],
                   primary_key: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """A table's ``(cursor, primary_key)`` from the config's ``streams`` settings (the
    primary key defaults to the table's own). A cursor column the table lacks is a
    :class:`~conn.errors.ConfigError`."""
    opts = config.get("streams", {}).get(table, {})
    cursor = opts.get("cursor")
    if cursor and cursor not in columns:
        raise ConfigError(f"stream {table!r}: cursor column {cursor!r} does not exist",
                          path=f"config.streams.{table}.cursor")
    return cursor, tuple(opts.get("primary_key") or primary_key)


def check_query_key(primary_key: Sequence[str], columns: Sequence[str]) -> None:
    """A query stream's primary key must name columns of the query."""
    missing = [k for k in primary_key if k not in columns]
    if missing:
        raise ConfigError(f"query has no column(s) {missing} for the primary key")


def incremental_query(sql: str, cursor_column: str | None, state: Any,
                      mark: str) -> tuple[str, tuple[Any, ...]]:
    """``sql`` reading incrementally: rows whose cursor is greater than the bookmark
    ``state`` (bound as ``mark``, the driver's placeholder), in cursor order.

    ``cursor_column`` is the quoted cursor column (None: a full read, ``sql`` unchanged);
    returns the SQL and its parameters.
    """
    params: tuple[Any, ...] = ()
    if cursor_column:
        if state is not None:
            sql += f" WHERE {cursor_column} > {mark}"
            params = (state,)
        sql += f" ORDER BY {cursor_column}"
    return sql, params


def default_bookmark(value: Any) -> Any:
    """A cursor value as stored in JSON state: numbers stay numbers, dates and times
    become ISO 8601 text, anything else its text."""
    if isinstance(value, bool | int | float):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def with_bookmarks(batches: Iterable[pa.RecordBatch], cursor: str,
                   bookmark: Callable[[Any], Any] = default_bookmark
                   ) -> Iterator[pa.RecordBatch | SourceState]:
    """Yield each batch (read in cursor order), then a bookmark once no later row can
    share its last cursor value (one batch of look-ahead), so resuming with
    ``cursor > bookmark`` loses nothing. ``bookmark`` turns a cursor value into state."""
    pending: pa.RecordBatch | None = None
    for batch in batches:
        if pending is not None:
            yield pending
            last = pending.column(cursor)[-1].as_py()
            if last is not None and batch.column(cursor)[0].as_py() != last:
                yield SourceState(bookmark(last))
        pending = batch
    if pending is not None:
        yield pending
        last = pending.column(cursor)[-1].as_py()
        if last is not None:
            yield SourceState(bookmark(last))

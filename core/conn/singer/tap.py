"""A conn source as a Singer tap (``conn singer tap``): the source's streams as a catalog,
the streams a catalog selects, and each selected stream read through
:meth:`conn.source.Source.read` and written as SCHEMA, RECORD (encoded in bulk from Arrow,
see :func:`conn.singer.protocol.encode_records`) and STATE messages.

A stream's bookmark is ``{"replication_key": "<cursor>", "replication_key_value":
<the source's bookmark>}``, or ``{"conn_state": <the source's bookmark>}`` for a source
whose bookmark is not a cursor value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import IO, Any, NamedTuple

import pyarrow as pa

from conn.errors import ConfigError, ConnError
from conn.singer.catalog import deselected_properties
from conn.singer.protocol import encode_records, json_problem, schema_message, state_message
from conn.singer.schema import arrow_to_json_schema
from conn.source import Source, SourceState, StreamInfo

log = logging.getLogger("conn.singer")

#: What ``--about`` says the tap supports.
TAP_CAPABILITIES = ("catalog", "discover", "state", "about")


# --- catalog --------------------------------------------------------------------------------


def catalog_entry(stream: StreamInfo) -> dict[str, Any]:
    """A Singer catalog entry for a conn stream: JSON Schema from its Arrow schema, key
    properties (never nullable), replication key and method, standard metadata (selected
    by default)."""
    schema = arrow_to_json_schema(stream.schema, stream.primary_key)
    top: dict[str, Any] = {"inclusion": "available", "selected-by-default": True,
                           "table-key-properties": list(stream.primary_key)}
    if stream.cursor:
        top["valid-replication-keys"] = [stream.cursor]
        top["replication-key"] = stream.cursor
        top["forced-replication-method"] = "INCREMENTAL"
    else:
        top["forced-replication-method"] = "FULL_TABLE"
    automatic = set(stream.primary_key) | ({stream.cursor} if stream.cursor else set())
    metadata = [{"breadcrumb": [], "metadata": top}]
    for f in stream.schema:
        metadata.append({"breadcrumb": ["properties", f.name],
                         "metadata": {"inclusion": "automatic" if f.name in automatic
                                      else "available"}})
    entry: dict[str, Any] = {
        "tap_stream_id": stream.name, "stream": stream.name, "schema": schema,
        "key_properties": list(stream.primary_key),
        "replication_method": "INCREMENTAL" if stream.cursor else "FULL_TABLE",
        "metadata": metadata,
    }
    if stream.cursor:
        entry["replication_key"] = stream.cursor
    return entry


def discover_catalog(streams: Sequence[StreamInfo]) -> dict[str, Any]:
    """The catalog ``--discover`` prints: one entry per stream (:func:`catalog_entry`)."""
    return {"streams": [catalog_entry(s) for s in streams]}


class TapStream(NamedTuple):
    """A stream a tap run sends: the properties its catalog leaves out, and whether it is
    read from its bookmark (any replication method but ``FULL_TABLE``)."""

    stream: StreamInfo
    dropped: set[str]
    incremental: bool


def _top_metadata(entry: Mapping[str, Any]) -> dict[str, Any]:
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == []:
            return dict(md.get("metadata") or {})
    return {}


def _entry_selected(entry: Mapping[str, Any]) -> bool:
    top = _top_metadata(entry)
    if top.get("inclusion") == "unsupported":
        return False
    if "selected" in top:
        return bool(top["selected"])
    if "selected" in entry:
        return bool(entry["selected"])
    return bool(top.get("selected-by-default", False))


def _replication_method(entry: Mapping[str, Any]) -> str | None:
    top = _top_metadata(entry)
    return (entry.get("replication_method") or top.get("replication-method")
            or top.get("forced-replication-method"))


def selected_streams(streams: Sequence[StreamInfo], catalog: Mapping[str, Any] | None, *,
                     source_name: str, catalog_file: str | None = None) -> list[TapStream]:
    """The streams a run sends: without a catalog, every stream of the source in full;
    else the catalog's selected entries in its order (``selected`` in the stream's metadata
    or entry, else ``selected-by-default``), without their deselected properties. An entry
    naming no stream of the source is a :class:`~conn.errors.ConfigError`."""
    if catalog is None:
        return [TapStream(s, set(), True) for s in streams]
    by_name = {s.name: s for s in streams}
    out = []
    for entry in catalog.get("streams") or ():
        name = entry.get("tap_stream_id") or entry.get("stream")
        if not _entry_selected(entry):
            continue
        if name not in by_name:
            raise ConfigError(f"catalog stream {name!r} is not a stream of source "
                              f"{source_name!r} (streams: {', '.join(by_name)})",
                              file=catalog_file)
        incremental = _replication_method(entry) != "FULL_TABLE"
        out.append(TapStream(by_name[name], deselected_properties(entry), incremental))
    return out


# --- the stream loop ------------------------------------------------------------------------


def _bookmark_value(state: Any, stream: str) -> Any:
    if not isinstance(state, dict):
        return None
    bm = (state.get("bookmarks") or {}).get(stream)
    if not isinstance(bm, dict):
        return None
    if "conn_state" in bm:
        return bm["conn_state"]
    return bm.get("replication_key_value")


def _bookmark(stream: StreamInfo, value: Any) -> dict[str, Any]:
    if stream.cursor and not isinstance(value, (dict, list)):
        return {"replication_key": stream.cursor, "replication_key_value": value}
    return {"conn_state": value}


def run_tap(source: Source, streams: Sequence[TapStream], state: Mapping[str, Any],
            out: IO[bytes], batch_rows: int) -> None:
    """Write ``streams`` of ``source`` to ``out``: per stream a SCHEMA, its RECORDs and a
    STATE after each bookmark the source yields (incremental streams resume from their
    bookmark in ``state``), then a final STATE unless it would repeat the last one."""
    bookmarks: dict[str, Any] = dict(state.get("bookmarks") or {})
    last: list[bytes] = [b""]
    for stream, dropped, incremental in streams:
        _tap_stream(source, stream, dropped, incremental, bookmarks, out, batch_rows, last)
    final = state_message({**state, "bookmarks": bookmarks})
    if final != last[0]:
        out.write(final)
    out.flush()


def _tap_stream(source: Source, stream: StreamInfo, dropped: set[str], incremental: bool,
                bookmarks: dict[str, Any], out: IO[bytes], batch_rows: int,
                last: list[bytes]) -> None:
    keep = [n for n in stream.schema.names if n not in dropped]
    schema = pa.schema([stream.schema.field(n) for n in keep])
    json_schema = arrow_to_json_schema(schema, stream.primary_key)
    out.write(schema_message(stream.name, json_schema, stream.primary_key,
                             [stream.cursor] if stream.cursor else None))
    prior = _bookmark_value({"bookmarks": bookmarks}, stream.name) \
        if incremental and stream.cursor else None
    n = 0
    for item in source.read(stream, prior, batch_rows):
        if isinstance(item, SourceState):
            bookmarks[stream.name] = _bookmark(stream, item.value)
            last[0] = state_message({"bookmarks": bookmarks})
            out.write(last[0])
            continue
        if dropped:
            item = item.select(keep)
        _refuse_unrepresentable(stream, item)
        out.write(encode_records(stream.name, item))
        last[0] = b""
        n += item.num_rows
    out.flush()
    log.info("stream %s: %d record(s)", stream.name, n)


def _refuse_unrepresentable(stream: StreamInfo, batch: pa.RecordBatch) -> None:
    """A tap has no rejection list and must not rewrite a value (NaN as null, year 30000
    as garbage): a value with no JSON form stops the tap, naming the row's key."""
    problem = json_problem(batch)
    if problem is None:
        return
    row, reason = problem
    key = ", ".join(f"{c}={batch.column(c)[row].as_py()!r}" for c in stream.primary_key
                    if c in batch.schema.names) or f"row {row + 1} of its batch"
    raise ConnError(f"stream {stream.name!r}, record {key}: {reason}. 'conn singer tap' "
                    f"sends every value exactly or not at all: filter or convert it in the "
                    f"source (e.g. a query or a view)")

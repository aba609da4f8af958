"""In-process plugins for the core's tests: a memory source and a recording destination.

They register through the same hooks as any plugin (``Registry.add_module(fakes)``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
from conn import hookimpl
from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.errors import CheckFailed
from conn.source import Source, SourceState, StreamInfo

#: stream name -> (table, primary key); tests fill it.
TABLES: dict[str, tuple[pa.Table, tuple[str, ...]]] = {}
#: stream name -> cursor column, for streams read incrementally.
CURSORS: dict[str, str] = {}
#: Every request a RecordingDestination received: (instance, operation, list of dicts).
RECEIVED: list[tuple[str, str, list[dict[str, Any]]]] = []
#: Optional hook to make a write fail: called with the request before recording it.
WRITE_HOOK: list[Callable[[WriteRequest], WriteResult | None]] = []


#: The columns of each read (a source with ``projection`` reads only these).
READ_COLUMNS: list[list[str]] = []


def reset() -> None:
    READ_COLUMNS.clear()
    TABLES.clear()
    CURSORS.clear()
    RECEIVED.clear()
    WRITE_HOOK.clear()


class MemorySource(Source):
    """Streams tables held in :data:`TABLES`, only the columns of the stream it is given
    (``projection``: every runtime test runs with the narrowed streams)."""

    name = "memory"
    projection = True
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "token": {"type": "string", "secret": True},
            "fail_check": {"type": "boolean"},
        },
    }

    def check(self) -> None:
        if self.config.get("fail_check"):
            raise CheckFailed(f"memory source refused token {self.config.get('token')}")

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo(name, t.schema, pk, CURSORS.get(name))
                for name, (t, pk) in TABLES.items()]

    def read_batches(self, stream: StreamInfo, state: Any, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        import pyarrow.compute as pc

        table, _ = TABLES[stream.name]
        if stream.cursor and state is not None:
            table = table.filter(pc.greater(table[stream.cursor], state))
        READ_COLUMNS.append(list(stream.schema.names))
        yield from table.select(stream.schema.names).to_batches(max_chunksize=batch_rows)
        if stream.cursor and table.num_rows:
            yield SourceState(pc.max(table[stream.cursor]).as_py())


CONTACT_FIELDS = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "name": {"type": ["string", "null"]},
        "ltv": {"type": ["number", "null"]},
        "plan": {"type": ["string", "null"]},
    },
}


class RecordingDestination(Destination):
    """Keeps what it receives in :data:`RECEIVED`; rejects e-mails listed in config."""

    name = "recorder"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "token": {"type": "string", "secret": True},
            "reject": {"type": "array", "items": {"type": "string"}},
            "batch_size": {"type": "integer", "minimum": 1},
            "modes": {"type": "array", "items": {"type": "string"}},
        },
    }

    def check(self) -> None:
        pass

    def objects(self) -> list[ObjectInfo]:
        modes = frozenset(self.config.get("modes") or
                          ["upsert", "insert", "update", "mirror", "append"])
        caps = Capabilities(batch_size=self.config.get("batch_size", 1000), modes=modes)
        return [ObjectInfo("contacts", CONTACT_FIELDS, ("email", "id"), caps,
                           personal={"email": "email", "name": "name"})]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        for hook in WRITE_HOOK:
            res = hook(request)
            if res is not None:
                return res
        rows = request.to_pylist()
        bad = set(self.config.get("reject") or ())
        rejected = [Rejection(i, f"INVALID_EMAIL: {r[request.match_key]} is not allowed",
                              excerpt=_exchange(r, request.match_key))
                    for i, r in enumerate(rows) if r.get(request.match_key) in bad]
        bad_idx = {r.index for r in rejected}
        RECEIVED.append((self.instance, request.operation,
                         [r for i, r in enumerate(rows) if i not in bad_idx]))
        return WriteResult(rejected=rejected)


def _exchange(record: dict[str, Any], field: str) -> dict[str, Any] | None:
    """The excerpt an HTTP API's refusal of ``record`` would leave (conn.http.exchange):
    the recorder acts as a CRM answering ``422`` to ``POST /v1/contacts``."""
    from types import SimpleNamespace

    from conn.http.exchange import Exchange, excerpt

    answer = SimpleNamespace(text=json.dumps({"status": "error", "category": "VALIDATION",
                                              "message": f"{record[field]} is invalid"}))
    return excerpt(record, Exchange("POST", "https://crm.example/v1/contacts?token=t0k", 422,
                                    answer))


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    register(MemorySource)


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    register(RecordingDestination)

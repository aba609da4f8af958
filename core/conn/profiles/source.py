"""The ``profiles`` source: each built profile set as the stream ``profiles.NAME``.

conn.yml declares it implicitly when it has a ``profiles:`` section, so a sync reads
profiles like any stream (``source: profiles``, ``stream: profiles.customers``) and its
rows pass the consent gate, the mapper and the planner as every other source's do. The
primary key is ``profile_id``; identifier columns are tagged as personal data of their
kind, so field policies (hash, drop, mask) apply to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from conn.errors import CheckFailed, ConfigError
from conn.source import Source, SourceState, StreamInfo

if TYPE_CHECKING:
    from conn.profiles.store import ProfileStore

#: Identifier kinds that are personal data of a consent-layer kind.
_PERSONAL = {"email": "email", "phone": "phone"}


class ProfilesSource(Source):
    """Reads built profile sets from the project's profile store (.conn/profiles.duckdb)."""

    name = "profiles"
    config_schema: ClassVar[dict[str, Any]] = {"type": "object",
                                               "additionalProperties": False}

    def _state_dir(self) -> Path:
        return (self.project_dir or Path.cwd()) / ".conn"

    def _names(self, st: ProfileStore) -> list[str]:
        rows = st.query("SELECT table_name FROM information_schema.tables "
                        "WHERE table_name LIKE '%.golden' ORDER BY 1")
        return [r["table_name"][: -len(".golden")] for r in rows]

    def check(self) -> None:
        from conn.profiles import store

        if not store.path(self._state_dir()).is_file():
            raise CheckFailed("no profiles built yet: run 'conn profiles build'")

    def discover(self) -> list[StreamInfo]:
        from conn.profiles import store

        if not store.path(self._state_dir()).is_file():
            return []
        with store.opened(self._state_dir(), read_only=True) as st:
            out = []
            for name in self._names(st):
                schema = st.golden_schema(name)
                personal = {c: _PERSONAL[c] for c in schema.names if c in _PERSONAL}
                out.append(StreamInfo(f"profiles.{name}", schema, ("profile_id",),
                                      personal=personal))
            return out

    def query_stream(self, query: str, primary_key: tuple[str, ...]) -> StreamInfo:
        raise ConfigError("the profiles source has no queries: use "
                          "'stream: profiles.NAME' (run 'conn profiles build' first)")

    def read_batches(self, stream: StreamInfo, state: Any | None,
                     batch_rows: int) -> Iterator[pa.RecordBatch | SourceState]:
        from conn.profiles import store

        name = stream.name.removeprefix("profiles.")
        with store.opened(self._state_dir(), read_only=True) as st:
            table = st.golden(name)
        yield from table.to_batches(max_chunksize=batch_rows)

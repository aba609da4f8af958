"""The ``profiles`` source: each built profile set as the stream ``profiles.NAME``.

conn.yml declares it implicitly when it has a ``profiles:`` section, so a sync reads
profiles like any stream (``source: profiles``, ``stream: profiles.customers``) and its
rows pass the consent gate, the mapper and the planner as every other source's do. The
primary key is ``profile_id``; identifier columns are tagged as personal data of their
kind, so field policies (hash, drop, mask) apply to them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from conn.errors import ConfigError
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
        """Nothing to connect to: profiles are read from the project's own state folder
        (a set not built yet is reported when a sync reads it)."""

    def discover(self) -> list[StreamInfo]:
        from conn.profiles import store

        out: dict[str, StreamInfo] = {}
        if store.path(self._state_dir()).is_file():
            with store.opened(self._state_dir(), read_only=True) as st:
                for name in self._names(st):
                    out[name] = _stream(name, st.golden_schema(name))
        for name, schema in self._declared().items():
            out.setdefault(name, _stream(name, schema))
        return list(out.values())

    def _declared(self) -> dict[str, pa.Schema]:
        """The sets conn.yml declares, with the schema their stream will have (golden
        fields as text until the first build gives them their sources' types), so that
        ``conn check`` can check a sync of a set not built yet."""
        from conn.config import load_project
        from conn.config.profiles import profile_sets

        try:
            project = load_project(self.project_dir or Path.cwd(), validate_plugins=False)
        except ConfigError:
            return {}
        out = {}
        for name, ps in profile_sets(project).items():
            fields = [pa.field("profile_id", pa.string())]
            for t in ps.types:
                fields += [pa.field(t, pa.string()), pa.field(f"{t}_all",
                                                              pa.list_(pa.string()))]
            fields += [pa.field("records", pa.int64()),
                       pa.field("edges", pa.list_(pa.string()))]
            fields += [pa.field(f, pa.bool_() if r.rule == "consent" else pa.string())
                       for f, r in ps.fields.items()]
            out[name] = pa.schema(fields)
        return out

    def query_stream(self, query: str, primary_key: tuple[str, ...]) -> StreamInfo:
        raise ConfigError("the profiles source has no queries: use "
                          "'stream: profiles.NAME' (run 'conn profiles build' first)")

    def read_batches(self, stream: StreamInfo, state: Any | None,
                     batch_rows: int) -> Iterator[pa.RecordBatch | SourceState]:
        from conn.profiles import store

        name = stream.name.removeprefix("profiles.")
        built = store.path(self._state_dir()).is_file()
        with contextlib.ExitStack() as stack:
            st = stack.enter_context(store.opened(self._state_dir(), read_only=True)) \
                if built else None
            if st is None or not st.has(name, "golden"):
                raise ConfigError(f"profile set {name!r} is not built yet: run "
                                  f"'conn profiles build {name}'")
            table = st.golden(name)
        yield from table.to_batches(max_chunksize=batch_rows)

    def merged_away(self, stream: StreamInfo) -> pa.Array:
        """The profile ids of ``stream``'s set that merges absorbed into others: an
        upsert sync removes their records from its destination (docs/profiles.md,
        "Merges reach destinations")."""
        from conn.profiles import store

        if not store.path(self._state_dir()).is_file():
            return pa.array([], pa.string())
        with store.opened(self._state_dir(), read_only=True) as st:
            return st.merged_away(stream.name.removeprefix("profiles."))


def survivors(source: Source, stream: StreamInfo) -> pa.Table | None:
    """For a sync reading a profile set: each absorbed profile id (``old_id``) with the
    profile it lives on in now (``new_id``, see
    :meth:`~conn.profiles.store.ProfileStore.survivors`); None for another source."""
    from conn.profiles import store

    if not isinstance(source, ProfilesSource):
        return None
    if not store.path(source._state_dir()).is_file():
        return pa.table({"old_id": pa.array([], pa.string()),
                         "new_id": pa.array([], pa.string())})
    with store.opened(source._state_dir(), read_only=True) as st:
        return st.survivors(stream.name.removeprefix("profiles."))


def _stream(name: str, schema: pa.Schema) -> StreamInfo:
    # TYPE and TYPE_all (every value, a list) both hold the identifier: both are tagged,
    # so a policy on the kind covers every copy of an e-mail (docs/profiles.md).
    personal = {c: _PERSONAL[c.removesuffix("_all")] for c in schema.names
                if c.removesuffix("_all") in _PERSONAL}
    return StreamInfo(f"profiles.{name}", schema, ("profile_id",), personal=personal)

"""A conn destination as a Singer target (``conn singer target``).

The target never writes on its own. :class:`SingerInput` serves the Singer messages read
from stdin stream by stream, :class:`StdinSingerSource` turns one stream's messages into
Arrow batches, and :class:`SingerTarget` runs each stream as a sync of the normal
:class:`~conn.runtime.runner.SyncRunner`, handed that source ready-made
(``SyncRunner(..., sources={STDIN_SOURCE: source})``): consent gate, mapper, planner and
delivery path, exactly like ``conn sync``. A STATE value is echoed to stdout (as a bare
JSON line, like Singer targets) only once every record that preceded it has been
acknowledged, rejected or withheld by the gate and committed to conn's state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conn import secrets
from conn.errors import ConfigError, ConnError
from conn.singer.protocol import (
    RECORD_PREFIX,
    RecordConverter,
    SchemaMismatch,
    conform,
    dumps,
    loads,
)
from conn.singer.schema import json_schema_to_arrow
from conn.source import Source, SourceState, StreamInfo

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.config.model import ConnectorConfig, Project, SyncConfig
    from conn.plugins import Registry
    from conn.runtime.report import RunReport
    from conn.state.contracts import StateStore

log = logging.getLogger("conn.singer")

#: Name of the stand-in source of every sync ``conn singer target`` runs.
STDIN_SOURCE = "singer-stdin"

#: What ``--about`` says the target supports.
TARGET_CAPABILITIES = ("about",)

#: In a type-mode state folder: which loader continues the planning state that earlier
#: versions kept per plugin type (``singer-<type>-<stream>``), ``{type: loader}``.
LOADERS_FILE = "singer-loaders.json"


# --- stdin, stream by stream -----------------------------------------------------------------


class SingerInput:
    """Singer messages read from a binary stream, served per stream.

    The stream being loaded (the *live* one) reads stdin directly; messages of other
    streams are spooled to temporary files and served when their turn comes. STATE
    messages become numbered markers in every stream seen so far; a STATE value is
    released (``emit``) once each of those streams has passed its marker, i.e. every record
    before it has been committed by the runtime.
    """

    MARK = b"#"

    def __init__(self, fh: IO[bytes], emit: Callable[[Any], None],
                 wanted: Callable[[str, dict[str, Any]], bool]) -> None:
        self.fh = fh
        self.emit = emit
        self.wanted = wanted
        self.lineno = 0
        self.eof = False
        self.schemas: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.ignored: set[str] = set()
        self._dir = tempfile.TemporaryDirectory(prefix="conn-singer-")
        self.spools: dict[str, IO[bytes]] = {}
        self.live: str | None = None
        self.states: list[Any] = []
        self.need: list[frozenset[str]] = []
        self.passed: dict[str, int] = {}
        self.finished: set[str] = set()
        self.released = 0
        self.blocked = False

    # bookkeeping

    def close(self) -> None:
        for fh in self.spools.values():
            fh.close()
        self._dir.cleanup()

    def mark_passed(self, stream: str, k: int) -> None:
        """``stream`` has committed everything before STATE ``k``."""
        self.passed[stream] = max(self.passed.get(stream, 0), k + 1)
        self.release()

    def finish(self, stream: str, ok: bool) -> None:
        """``stream`` is done; a failed stream blocks every later STATE."""
        if ok:
            self.finished.add(stream)
        else:
            self.blocked = True
        self.release()

    def release(self) -> None:
        while not self.blocked and self.released < len(self.states):
            k = self.released
            if not all(s in self.finished or self.passed.get(s, 0) > k for s in self.need[k]):
                return
            self.emit(self.states[k])
            self.released += 1

    # reading

    def _spool(self, stream: str) -> IO[bytes]:
        fh = self.spools.get(stream)
        if fh is None:
            fh = open(os.path.join(self._dir.name, f"{len(self.spools)}.jsonl"), "w+b")  # noqa: SIM115
            self.spools[stream] = fh
        return fh

    def _register(self, stream: str, msg: dict[str, Any]) -> bool:
        """First SCHEMA of a stream: remember it; False when the stream is ignored."""
        if stream in self.schemas:
            return True
        if stream in self.ignored:
            return False
        if not self.wanted(stream, msg):
            self.ignored.add(stream)
            log.warning("ignoring Singer stream %r: no sync for it", stream)
            return False
        self.schemas[stream] = msg
        self.order.append(stream)
        return True

    def _fail(self, what: str) -> ConnError:
        return ConnError(f"Singer input line {self.lineno}: {what}")

    def _messages(self) -> Iterator[tuple[str, str | None, bytes, dict[str, Any] | None]]:
        """(type, stream, raw line, decoded message or None for RECORDs) from stdin."""
        for raw in self.fh:
            self.lineno += 1
            line = raw.strip()
            if not line:
                continue
            m = RECORD_PREFIX.match(line)
            if m is not None:
                yield "RECORD", m.group(1).decode(), line, None
                continue
            try:
                msg = loads(line)
            except ValueError:
                raise self._fail(f"not a Singer message (invalid JSON): {line[:200]!r}") \
                    from None
            if not isinstance(msg, dict) or "type" not in msg:
                raise self._fail(f"not a Singer message (no 'type'): {line[:200]!r}")
            yield str(msg["type"]), msg.get("stream"), line, msg
        self.eof = True

    def next_stream(self) -> str | None:
        """The next stream to load (reading stdin until a new one appears), or None."""
        for s in self.order:
            if s not in self.finished:
                return s
        if self.eof:
            return None
        for _ in self._route(None):
            pass  # with no live stream nothing is yielded; stops at a new stream
        for s in self.order:
            if s not in self.finished:
                return s
        return None

    def _route(self, live: str | None, stop_at_new: bool = True
               ) -> Iterator[tuple[str, Any]]:
        """Read stdin, spooling messages of streams other than ``live``; yield ``live``'s
        items. With ``live`` None, stop once a new wanted stream's SCHEMA has been read."""
        for kind, stream, line, msg in self._messages():
            if kind == "RECORD":
                if stream in self.ignored:
                    continue
                if stream not in self.schemas:
                    raise self._fail(f"RECORD for stream {stream!r} before its SCHEMA")
                if stream == live:
                    yield "record", line
                else:
                    self._spool(stream).write(line + b"\n")
            elif kind == "SCHEMA":
                if not isinstance(stream, str) or not isinstance((msg or {}).get("schema"),
                                                                 dict):
                    raise self._fail("SCHEMA message without a stream name or schema")
                new = stream not in self.schemas and stream not in self.ignored
                if not self._register(stream, msg or {}):
                    continue
                if stream == live:
                    yield "schema", msg
                else:
                    self._spool(stream).write(line + b"\n")
                if new and live is None and stop_at_new:
                    return
            elif kind == "STATE":
                k = len(self.states)
                self.states.append((msg or {}).get("value"))
                self.need.append(frozenset(s for s in self.order if s not in self.finished))
                for s in self.order:
                    if s != live and s not in self.finished:
                        self._spool(s).write(self.MARK + str(k).encode() + b"\n")
                if live is not None and live in self.need[k]:
                    yield "state", k
                else:
                    self.release()
            elif kind == "ACTIVATE_VERSION":
                continue  # conn's planner tracks what left the source (mirror mode)
            elif kind == "BATCH":
                raise self._fail("BATCH messages are not supported by 'conn singer "
                                 "target'; run the tap without batch_config")
            else:
                log.warning("ignoring Singer message of type %r on line %d", kind,
                            self.lineno)

    def items(self, stream: str) -> Iterator[tuple[str, Any]]:
        """Everything for ``stream``: spooled messages first, then stdin (live)."""
        fh = self.spools.pop(stream, None)
        if fh is not None:
            fh.flush()
            fh.seek(0)
            for raw in fh:
                line = raw.rstrip(b"\n")
                if line.startswith(self.MARK):
                    yield "state", int(line[1:])
                elif RECORD_PREFIX.match(line):
                    yield "record", line
                else:
                    yield "schema", loads(line)
            fh.close()
        if not self.eof:
            self.live = stream
            yield from self._route(stream, stop_at_new=False)
            self.live = None


class StdinSingerSource(Source):
    """A conn source over Singer messages read from stdin (through :class:`SingerInput`):
    one stream per sync, RECORD lines converted to Arrow in bulk, STATE messages yielded as
    :class:`~conn.source.SourceState` after the batches they cover."""

    name = STDIN_SOURCE
    description = "Singer messages on stdin (used by 'conn singer target')"

    def __init__(self, singer_input: SingerInput, stream: str,
                 primary_key: Sequence[str] = ()) -> None:
        super().__init__({}, instance=STDIN_SOURCE)
        self.input = singer_input
        self.stream_name = stream
        msg = singer_input.schemas[stream]
        self.json_schema: dict[str, Any] = msg["schema"]
        self.key_properties = tuple(primary_key) or tuple(msg.get("key_properties") or ())
        self.rows_read = 0

    def check(self) -> None:
        """Nothing to connect to."""

    def discover(self) -> list[StreamInfo]:
        import pyarrow as pa

        # JSON Schema allows a property to be absent unless it is ``required``: only key
        # properties and required properties are non-nullable columns.
        keep = set(self.key_properties) | set(self.json_schema.get("required") or ())
        schema = json_schema_to_arrow(self.json_schema)
        # Columns in name order, not the SCHEMA's: some taps list properties in another
        # order every run (pipelinewise-tap-mysql selects columns through a set), and the
        # planner's payload hash covers the mapped columns in order, so the tap's order
        # would make every unchanged row look changed.
        fields = sorted(schema, key=lambda f: f.name)
        schema = pa.schema([f if f.name in keep else f.with_nullable(True) for f in fields])
        return [StreamInfo(self.stream_name, schema, self.key_properties)]

    def read_batches(self, stream: StreamInfo, state: Any | None, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        conv = RecordConverter(self.json_schema, stream.schema)
        current = self.json_schema
        buf: list[bytes] = []

        def flush() -> Iterator[pa.RecordBatch]:
            if not buf:
                return
            try:
                batch = conv.from_lines(buf)
            except SchemaMismatch as exc:
                i, reason = conv.first_bad(buf)
                raise ConnError(f"Singer stream {self.stream_name!r}: record "
                                f"{self.rows_read + max(i, 0) + 1} does not match its "
                                f"SCHEMA: {reason or exc}") from exc
            self.rows_read += len(buf)
            buf.clear()
            if not batch.schema.equals(stream.schema):
                batch = conform(batch, stream.schema)
            yield batch

        for kind, payload in self.input.items(self.stream_name):
            if kind == "record":
                buf.append(payload)
                if len(buf) >= batch_rows:
                    yield from flush()
            elif kind == "state":
                yield from flush()
                # wait: resumed only once every earlier batch is committed, so the
                # STATE released by mark_passed covers acknowledged records only.
                yield SourceState(self.input.states[payload], wait=True)
                self.input.mark_passed(self.stream_name, payload)
            elif kind == "schema":
                new = payload.get("schema")
                if new != current:
                    yield from flush()
                    log.info("Singer stream %r: SCHEMA changed; records are conformed to "
                             "the first schema (new columns are not sent)", self.stream_name)
                    conv = RecordConverter(new)
                    current = new
        yield from flush()


# --- which sync loads each stream ----------------------------------------------------------


def declared_syncs(project: Project | None, dest: ConnectorConfig, names: Sequence[str]
                   ) -> dict[str, SyncConfig] | None:
    """The syncs of conn.yml named with ``--sync``, by the Singer stream each reads, their
    source replaced by stdin; None when no sync is named (each stream then gets an ad-hoc
    sync), which a destination that declares purposes refuses: an ad-hoc sync has no
    consent settings, and the consent gate is never bypassed."""
    if not names:
        if dest.purposes:
            raise ConfigError(
                f"destination {dest.name!r} declares purposes {list(dest.purposes)}: rows "
                f"reach it only through a sync's consent settings. Name a sync with --sync "
                f"NAME (its 'stream' is the Singer stream; consent comes from its columns "
                f"or consent source); 'conn singer target' never bypasses the consent gate",
                file=str(project.file) if project else None,
                path=f"destinations.{dest.name}.purposes")
        return None
    if project is None:
        raise ConfigError("--sync needs a conn.yml (--project); in type mode every "
                          "Singer stream is loaded with --object/--mode")
    declared: dict[str, SyncConfig] = {}
    for n in names:
        if n not in project.syncs:
            raise ConfigError(f"unknown sync {n!r} (declared: {', '.join(project.syncs)})",
                              file=str(project.file), path="syncs")
        s = project.syncs[n]
        if s.destination != dest.name:
            raise ConfigError(f"sync {n!r} sends to {s.destination!r}, not {dest.name!r}",
                              file=str(project.file), path=f"syncs.{n}.destination")
        if s.stream is None:
            raise ConfigError(f"sync {n!r} uses a query; for 'conn singer target' its "
                              f"'stream' names the Singer stream", file=str(project.file),
                              path=f"syncs.{n}")
        if s.stream in declared:
            raise ConfigError(f"syncs {declared[s.stream].name!r} and {n!r} both read "
                              f"Singer stream {s.stream!r}", file=str(project.file))
        declared[s.stream] = dataclasses.replace(s, source=STDIN_SOURCE, query=None)
    return declared


def loader_identity(cfg: ConnectorConfig, type_name: str | None, name: str | None,
                    registry: Registry) -> str:
    """Whose planning state a ``conn singer target`` run uses: ``--name``; else in project
    mode the destination's name in conn.yml; else Meltano's loader name
    (``MELTANO_LOADER_NAME``); else the plugin type and a digest of its config (secret
    values left out), so two loaders of one type never share what was sent."""
    if name:
        return name
    if type_name is None:
        return cfg.name
    meltano = os.environ.get("MELTANO_LOADER_NAME")
    if meltano:
        return meltano
    cls = registry.destination_class(cfg.type)
    secrets.register_config_secrets(cfg.config, cls.config_schema)
    canon = json.dumps(secrets.redact_obj(cfg.config), sort_keys=True, default=str)
    return f"{type_name}-{hashlib.sha256(canon.encode()).hexdigest()[:12]}"


def _state_prefix(identity: str, type_name: str | None, stream: str, store: StateStore,
                  proj: Project) -> str:
    """The middle of a loader's ad-hoc sync name (``singer-<part>-<stream>``): its
    identity; but where earlier versions kept this stream's state under the plugin type
    alone (``singer-<type>-<stream>``), the first loader of that type to run continues
    that state, for all its streams (recorded in :data:`LOADERS_FILE`), so that
    upgrading re-sends nothing."""
    if type_name is None or identity == type_name:
        return identity
    path = Path(str(proj.state.get("url") or proj.state_dir)) / LOADERS_FILE
    try:
        claims = json.loads(path.read_text())
    except (OSError, ValueError):
        claims = {}
    owner = claims.get(type_name)
    legacy = f"singer-{type_name}-{stream}"
    if owner is None and store.runs(sync=legacy, limit=1):
        claims[type_name] = owner = identity
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(claims, indent=1))
        os.replace(tmp, path)
        log.warning("loader %r continues the planning state that earlier versions kept "
                    "for every %s loader (%r, ...; recorded in %s); other %s loaders keep "
                    "their own", identity, type_name, legacy, path, type_name)
    return type_name if owner == identity else identity


# --- the run -----------------------------------------------------------------------------


class SingerTarget:
    """Loads Singer messages into one conn destination, one sync per Singer stream, each
    run by :class:`~conn.runtime.runner.SyncRunner` with a :class:`StdinSingerSource`.

    ``declared``: the syncs named with ``--sync`` (:func:`declared_syncs`), or None to give
    each stream an ad-hoc sync: object from ``objects`` (by stream), else
    ``default_object``, else the destination's object named like the stream (listed by
    ``destination_objects()``, called at most once); ``mode`` (default ``upsert``),
    ``match_key``, ``primary_key`` (else the stream's ``key_properties``), ``batch_rows``;
    its state is named by :func:`loader_identity` (``type_name``: the plugin type in type
    mode; ``loader``: ``--name``)."""

    def __init__(self, dest: ConnectorConfig, project: Project, registry: Registry, *,
                 declared: Mapping[str, SyncConfig] | None = None,
                 objects: Mapping[str, str] | None = None, default_object: str | None = None,
                 destination_objects: Callable[[], Sequence[str]] | None = None,
                 mode: str | None = None, match_key: str | None = None,
                 primary_key: Sequence[str] = (), batch_rows: int | None = None,
                 full_resync: bool = False, type_name: str | None = None,
                 loader: str | None = None) -> None:
        self.dest, self.project, self.registry = dest, project, registry
        self.declared = declared
        self.objects = dict(objects or {})
        self.default_object = default_object
        self.destination_objects = destination_objects
        self.mode, self.match_key, self.primary_key = mode, match_key, tuple(primary_key)
        self.batch_rows, self.full_resync = batch_rows, full_resync
        self.type_name, self.loader = type_name, loader
        #: The sync of every Singer stream seen (None: the stream is ignored).
        self.stream_syncs: dict[str, SyncConfig | None] = {}
        self._dest_objects: list[str] | None = None
        self._identity: str | None = None
        self._store: StateStore | None = None

    def object_for(self, stream: str) -> str:
        """The destination object of an ad-hoc sync for ``stream``."""
        if stream in self.objects:
            return self.objects[stream]
        if self.default_object:
            return self.default_object
        if self._dest_objects is None:
            self._dest_objects = list(self.destination_objects()) \
                if self.destination_objects else []
        if stream in self._dest_objects:
            return stream
        raise ConfigError(f"destination {self.dest.name!r} has no object {stream!r} for "
                          f"Singer stream {stream!r} (objects: "
                          f"{', '.join(self._dest_objects) or 'none'}); choose one with "
                          f"--object OBJECT or --object {stream}=OBJECT")

    def sync_for(self, stream: str, msg: Mapping[str, Any]) -> SyncConfig | None:
        """The sync that loads ``stream`` (its first SCHEMA is ``msg``), or None."""
        from conn.config.model import SyncConfig

        schema_keys = tuple(msg.get("key_properties") or ())
        if self.declared is not None:
            sync = self.declared.get(stream)
            if sync is None or sync.primary_key or schema_keys:
                return sync
            if self.primary_key:
                return dataclasses.replace(sync, primary_key=self.primary_key)
            raise ConfigError(
                f"Singer stream {stream!r} has no key_properties in its SCHEMA and sync "
                f"{sync.name!r} sets no primary_key: conn plans changes by primary key. Set "
                f"'primary_key' for the sync, or pass --primary-key COLUMN (repeat it for "
                f"a composite key)", file=str(self.project.file), path=f"syncs.{sync.name}")
        keys = self.primary_key or schema_keys
        if not keys:
            raise ConfigError(
                f"Singer stream {stream!r} has no key_properties in its SCHEMA: conn plans "
                f"changes by primary key. Name the key column(s) with --primary-key COLUMN "
                f"(repeat it for a composite key)")
        if self._identity is None:
            self._identity = loader_identity(self.dest, self.type_name, self.loader,
                                             self.registry)
        assert self._store is not None
        part = _state_prefix(self._identity, self.type_name, stream, self._store,
                             self.project)
        return SyncConfig(name=f"singer-{part}-{stream}", source=STDIN_SOURCE,
                          destination=self.dest.name, object=self.object_for(stream),
                          stream=stream, primary_key=keys, match_key=self.match_key,
                          mode=self.mode or "upsert", batch_rows=self.batch_rows)

    def _wanted(self, stream: str, msg: dict[str, Any]) -> bool:
        if stream not in self.stream_syncs:
            self.stream_syncs[stream] = self.sync_for(stream, msg)
        return self.stream_syncs[stream] is not None

    def run(self, fh: IO[bytes], out: IO[bytes]) -> RunReport:
        """Load the Singer messages of ``fh``, echoing released STATE values to ``out``;
        stops at the first sync that fails (its report is the last one)."""
        from conn.runtime.report import RunInfo, RunReport
        from conn.runtime.runner import RunOptions, SyncRunner, open_state_store

        def emit(value: Any) -> None:
            out.write(dumps(value) + b"\n")
            out.flush()

        proj, registry = self.project, self.registry
        singer_input = SingerInput(fh, emit, self._wanted)
        options = RunOptions(full_resync=self.full_resync, batch_rows=self.batch_rows)
        registry.load_observers()
        run = RunInfo.new(proj.dir, [], full_resync=self.full_resync)
        report = RunReport(run)
        self._store = store = open_state_store(proj, registry)
        registry.hook.run_started(run=run)
        try:
            failed = False
            while True:
                stream = singer_input.next_stream()
                if stream is None:
                    break
                sync = self.stream_syncs[stream]
                assert sync is not None
                run.syncs.append(sync.name)
                project_for = dataclasses.replace(proj, syncs={**proj.syncs, sync.name: sync})
                source = StdinSingerSource(singer_input, stream, sync.primary_key)
                rep = SyncRunner(project_for, sync, registry, store, run, options,
                                 sources={STDIN_SOURCE: source}).run()
                report.syncs.append(rep)
                ok = rep.status in ("ok", "rejected")
                singer_input.finish(stream, ok)
                log.info("sync %s: %s (%d read, %d inserted, %d updated, %d unchanged, "
                         "%d withheld by consent, %d rejected)", sync.name, rep.status,
                         rep.rows_read, rep.inserted, rep.updated, rep.unchanged,
                         rep.consent_denied, rep.rejected)
                if not ok:
                    failed = True
                    break
            if not failed:
                singer_input.release()
        finally:
            report.finished_at = time.time()
            registry.hook.run_finished(run=run, report=report)
            store.close()
            singer_input.close()
        return report

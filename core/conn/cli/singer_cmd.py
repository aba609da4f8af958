"""``conn singer tap`` and ``conn singer target``: any conn source as a Singer tap, any conn
destination as a Singer target.

Connector selection (both commands):

* **project mode** - ``conn singer tap SOURCE --project conn.yml`` /
  ``conn singer target DEST --project conn.yml [--sync NAME]``: the connector declared in
  ``conn.yml``. For a tap, a ``--config`` file (Meltano always passes one) is merged over
  the declared config.
* **type mode** - ``conn singer tap --type duckdb --config config.json`` /
  ``conn singer target --type files --config config.json``: no ``conn.yml``; the Singer
  config file *is* the plugin's ``config:`` block. Relative paths resolve against the
  working directory; the target keeps its planning state under ``./.conn``
  (``--state-dir``).

The tap reads each selected stream through :meth:`conn.source.Source.read` and writes
SCHEMA, RECORD (encoded in bulk from Arrow, see :func:`conn.singer_protocol.encode_records`)
and STATE messages to stdout; logs go to stderr.

The target never writes on its own: :class:`StdinSingerSource` turns stdin's Singer
messages into Arrow batches and the normal :class:`~conn.runtime.runner.SyncRunner` runs
them through the consent gate, the mapper, the planner and the delivery path. A STATE
value is echoed to stdout (as a bare JSON line, like Singer targets) only once every record
that preceded it has been acknowledged, rejected or withheld by the gate and committed to
conn's state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conn import secrets
from conn import singer_protocol as sp
from conn.errors import ConfigError, ConnError
from conn.source import Source, SourceState, StreamInfo

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.config.model import ConnectorConfig, Project, SyncConfig
    from conn.plugins import Registry
    from conn.runtime.report import SyncReport

log = logging.getLogger("conn.singer")

#: Name of the stand-in source of every sync ``conn singer target`` runs.
STDIN_SOURCE = "singer-stdin"


# --- shared -----------------------------------------------------------------------------


def _read_json_file(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return sp.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file: {exc.strerror or exc}",
                          file=str(path)) from exc
    except ValueError as exc:
        raise ConfigError(f"the {what} file is not valid JSON: {exc}", file=str(path)) from exc


def _out() -> IO[bytes]:
    return sys.stdout.buffer


def _plugin_version(registry: Registry, kind: str, type_name: str) -> str:
    import conn

    for p in getattr(registry, "plugins", ()) or ():
        if getattr(p, "name", None) == type_name and getattr(p, "kind", None) == kind:
            return str(getattr(p, "version", None) or conn.__version__)
    return conn.__version__


def _connector_config(kind: str, name: str | None, type_name: str | None,
                      config_file: Path | None, project: Path | None,
                      ) -> tuple[ConnectorConfig, Project | None, Registry]:
    """The connector to run (project or type mode) with its config; the project if any."""
    from conn.cli.common import open_project, setup_logging
    from conn.config.model import ConnectorConfig
    from conn.plugins import get_registry

    extra = _read_json_file(config_file, "config")
    if extra is not None and not isinstance(extra, dict):
        raise ConfigError("the config file must hold a JSON object", file=str(config_file))
    if type_name:
        if name and project:
            raise ConfigError(f"give either a {kind} name from conn.yml or --type, not both")
        setup_logging()
        cfg = ConnectorConfig(name=name or type_name, type=type_name, config=dict(extra or {}))
        return cfg, None, get_registry()
    if not name:
        raise ConfigError(f"name a {kind} declared in conn.yml, or give --type TYPE "
                          f"--config FILE to run a {kind} plugin without a project")
    proj, registry = open_project(project, only={name})
    table = proj.sources if kind == "source" else proj.destinations
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r} (declared: {', '.join(table) or 'none'})",
                          file=str(proj.file), path=f"{kind}s")
    cfg = table[name]
    if extra:
        cfg = dataclasses.replace(cfg, config={**cfg.config, **extra})
    return cfg, proj, registry


def _instantiate(kind: str, cfg: ConnectorConfig, registry: Registry,
                 project: Project | None) -> Any:
    cls = (registry.source_class if kind == "source" else registry.destination_class)(cfg.type)
    secrets.register_config_secrets(cfg.config, cls.config_schema)
    cls.validate_config(cfg.config, file=str(project.file) if project else None,
                        path=f"{kind}s.{cfg.name}.config" if project else "config")
    return cls.create(cfg.config, instance=cfg.name,
                      project_dir=project.dir if project else None)


def about(kind: str, cls: type, version: str, capabilities: Sequence[str]) -> dict[str, Any]:
    """The ``--about`` description of a conn plugin as a Singer tap or target."""
    return {
        "name": f"{'tap' if kind == 'source' else 'target'}-conn-{cls.name}",
        "description": getattr(cls, "description", "") or "",
        "version": version,
        "capabilities": list(capabilities),
        "settings": cls.config_schema,
        "conn_plugin": {"kind": kind, "type": cls.name},
    }


def _print_about(info: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        _out().write(sp.dumps(info) + b"\n")
        return
    lines = [f"# {info['name']}", "", info["description"], "",
             f"Version: {info['version']}", "",
             "Capabilities: " + ", ".join(info["capabilities"]), "", "## Settings", ""]
    for key, spec in (info["settings"].get("properties") or {}).items():
        desc = spec.get("description", "") if isinstance(spec, dict) else ""
        lines.append(f"- `{key}`: {desc}".rstrip(": "))
    _out().write(("\n".join(lines) + "\n").encode())


# --- the tap ----------------------------------------------------------------------------

TAP_CAPABILITIES = ("catalog", "discover", "state", "about")


def catalog_entry(stream: StreamInfo) -> dict[str, Any]:
    """A Singer catalog entry for a conn stream: JSON Schema from its Arrow schema, key
    properties (never nullable), replication key and method, standard metadata (selected
    by default)."""
    schema = sp.arrow_to_json_schema(stream.schema, stream.primary_key)
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


def _deselected_fields(entry: Mapping[str, Any]) -> set[str]:
    out = set()
    for md in entry.get("metadata") or ():
        bc = md.get("breadcrumb") or []
        m = md.get("metadata") or {}
        if len(bc) == 2 and bc[0] == "properties" and m.get("inclusion") != "automatic" and \
                (m.get("selected") is False or m.get("inclusion") == "unsupported"):
            out.add(bc[1])
    return out


def _replication_method(entry: Mapping[str, Any]) -> str | None:
    top = _top_metadata(entry)
    return (entry.get("replication_method") or top.get("replication-method")
            or top.get("forced-replication-method"))


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


def run_tap(source_name: str | None, *, type_name: str | None, config_file: Path | None,
            catalog_file: Path | None, state_file: Path | None, discover: bool,
            about_: bool, fmt: str, project: Path | None, batch_rows: int | None) -> None:
    """Speak the Singer tap protocol for a conn source (see the module docstring)."""
    cfg, proj, registry = _connector_config("source", source_name, type_name, config_file,
                                            project)
    if about_:
        cls = registry.source_class(cfg.type)
        _print_about(about("source", cls, _plugin_version(registry, "sources", cfg.type),
                           TAP_CAPABILITIES), fmt)
        return
    source: Source = _instantiate("source", cfg, registry, proj)
    out = _out()
    try:
        streams = source.discover()
        if discover:
            catalog = {"streams": [catalog_entry(s) for s in streams]}
            out.write(sp.dumps(catalog) + b"\n")
            out.flush()
            return
        catalog = _read_json_file(catalog_file, "catalog")
        state = _read_json_file(state_file, "state") or {}
        if not isinstance(state, dict):
            raise ConfigError("the state file must hold a JSON object", file=str(state_file))
        by_name = {s.name: s for s in streams}
        plan: list[tuple[StreamInfo, set[str], bool]] = []
        if catalog is None:
            plan = [(s, set(), True) for s in streams]
        else:
            for entry in catalog.get("streams") or ():
                name = entry.get("tap_stream_id") or entry.get("stream")
                if not _entry_selected(entry):
                    continue
                if name not in by_name:
                    raise ConfigError(f"catalog stream {name!r} is not a stream of source "
                                      f"{cfg.name!r} (streams: {', '.join(by_name)})",
                                      file=str(catalog_file))
                incremental = _replication_method(entry) != "FULL_TABLE"
                plan.append((by_name[name], _deselected_fields(entry), incremental))
        bookmarks: dict[str, Any] = dict(state.get("bookmarks") or {})
        rows = batch_rows or source.default_batch_rows
        last: list[bytes] = [b""]
        for stream, dropped, incremental in plan:
            _tap_stream(source, stream, dropped, incremental, bookmarks, out, rows, last)
        final = sp.state_message({**state, "bookmarks": bookmarks})
        if final != last[0]:
            out.write(final)
        out.flush()
    finally:
        source.close()


def _tap_stream(source: Source, stream: StreamInfo, dropped: set[str], incremental: bool,
                bookmarks: dict[str, Any], out: IO[bytes], batch_rows: int,
                last: list[bytes]) -> None:
    import pyarrow as pa

    keep = [n for n in stream.schema.names if n not in dropped]
    schema = pa.schema([stream.schema.field(n) for n in keep])
    json_schema = sp.arrow_to_json_schema(schema, stream.primary_key)
    out.write(sp.schema_message(stream.name, json_schema, stream.primary_key,
                                [stream.cursor] if stream.cursor else None))
    prior = _bookmark_value({"bookmarks": bookmarks}, stream.name) \
        if incremental and stream.cursor else None
    n = 0
    for item in source.read(stream, prior, batch_rows):
        if isinstance(item, SourceState):
            bookmarks[stream.name] = _bookmark(stream, item.value)
            last[0] = sp.state_message({"bookmarks": bookmarks})
            out.write(last[0])
            continue
        if dropped:
            item = item.select(keep)
        _refuse_unrepresentable(stream, item)
        out.write(sp.encode_records(stream.name, item))
        last[0] = b""
        n += item.num_rows
    out.flush()
    log.info("stream %s: %d record(s)", stream.name, n)


def _refuse_unrepresentable(stream: StreamInfo, batch: pa.RecordBatch) -> None:
    """A tap has no rejection list and must not rewrite a value (NaN as null, year 30000
    as garbage): a value with no JSON form stops the tap, naming the row's key."""
    problem = sp.json_problem(batch)
    if problem is None:
        return
    row, reason = problem
    key = ", ".join(f"{c}={batch.column(c)[row].as_py()!r}" for c in stream.primary_key
                    if c in batch.schema.names) or f"row {row + 1} of its batch"
    raise ConnError(f"stream {stream.name!r}, record {key}: {reason}. 'conn singer tap' "
                    f"sends every value exactly or not at all: filter or convert it in the "
                    f"source (e.g. a query or a view)")


# --- the target: stdin demultiplexer -------------------------------------------------------


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
            m = _RECORD_PREFIX.match(line)
            if m is not None:
                yield "RECORD", m.group(1).decode(), line, None
                continue
            try:
                msg = sp.loads(line)
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
                elif _RECORD_PREFIX.match(line):
                    yield "record", line
                else:
                    yield "schema", sp.loads(line)
            fh.close()
        if not self.eof:
            self.live = stream
            yield from self._route(stream, stop_at_new=False)
            self.live = None


_RECORD_PREFIX = re.compile(
    rb'^\{\s*"type"\s*:\s*"RECORD"\s*,\s*"stream"\s*:\s*"([^"\\]*)"\s*,')


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
        schema = sp.json_schema_to_arrow(self.json_schema)
        # Columns in name order, not the SCHEMA's: some taps list properties in another
        # order every run (pipelinewise-tap-mysql selects columns through a set), and the
        # planner's payload hash covers the mapped columns in order, so the tap's order
        # would make every unchanged row look changed.
        fields = sorted(schema, key=lambda f: f.name)
        schema = pa.schema([f if f.name in keep else f.with_nullable(True) for f in fields])
        return [StreamInfo(self.stream_name, schema, self.key_properties)]

    def read_batches(self, stream: StreamInfo, state: Any | None, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        conv = sp.RecordConverter(self.json_schema, stream.schema)
        current = self.json_schema
        buf: list[bytes] = []

        def flush() -> Iterator[pa.RecordBatch]:
            if not buf:
                return
            try:
                batch = conv.from_lines(buf)
            except sp.SchemaMismatch as exc:
                i, reason = conv.first_bad(buf)
                raise ConnError(f"Singer stream {self.stream_name!r}: record "
                                f"{self.rows_read + max(i, 0) + 1} does not match its "
                                f"SCHEMA: {reason or exc}") from exc
            self.rows_read += len(buf)
            buf.clear()
            if not batch.schema.equals(stream.schema):
                batch = sp.conform(batch, stream.schema)
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
                    conv = sp.RecordConverter(new)
                    current = new
        yield from flush()


# --- the target: running syncs ----------------------------------------------------------


def _runner_class() -> type:
    from conn.runtime.runner import SyncRunner

    class StdinSyncRunner(SyncRunner):
        """A :class:`SyncRunner` whose source is a :class:`StdinSingerSource`."""

        stdin_source: StdinSingerSource

        def _connector(self, kind: str, name: str) -> Any:
            if kind == "source" and name == STDIN_SOURCE:
                return self.stdin_source
            return super()._connector(kind, name)

    return StdinSyncRunner


def _parse_objects(values: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    default, per_stream = None, {}
    for v in values:
        if "=" in v:
            s, o = v.split("=", 1)
            per_stream[s] = o
        else:
            default = v
    return default, per_stream


TARGET_CAPABILITIES = ("about",)

#: In a type-mode state folder: which loader continues the planning state that earlier
#: versions kept per plugin type (``singer-<type>-<stream>``), ``{type: loader}``.
LOADERS_FILE = "singer-loaders.json"


def loader_identity(cfg: ConnectorConfig, type_name: str | None, name: str | None,
                    registry: Registry) -> str:
    """Whose planning state a ``conn singer target`` run uses: ``--name``; else in project
    mode the destination's name in conn.yml; else Meltano's loader name
    (``MELTANO_LOADER_NAME``); else the plugin type and a digest of its config (secret
    values left out), so two loaders of one type never share what was sent."""
    import hashlib
    import json

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


def _state_prefix(identity: str, type_name: str | None, stream: str, store: Any,
                  proj: Project) -> str:
    """The middle of a loader's ad-hoc sync name (``singer-<part>-<stream>``): its
    identity; but where earlier versions kept this stream's state under the plugin type
    alone (``singer-<type>-<stream>``), the first loader of that type to run continues
    that state, for all its streams (recorded in :data:`LOADERS_FILE`), so that
    upgrading re-sends nothing."""
    import json

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


def run_target(dest_name: str | None, *, type_name: str | None, config_file: Path | None,
               project: Path | None, sync_names: Sequence[str], objects: Sequence[str],
               mode: str | None, match_key: str | None, primary_key: Sequence[str],
               state_dir: Path | None, batch_rows: int | None, full_resync: bool,
               input_file: Path | None = None, about_: bool = False,
               fmt: str = "json", loader: str | None = None) -> None:
    """Load Singer messages from stdin into a conn destination (see the module docstring).
    ``loader`` names this loader for its planning state (:func:`loader_identity`)."""
    from conn.config.model import Project, SyncConfig
    from conn.runtime.report import RunInfo, RunReport
    from conn.runtime.runner import RunOptions, open_state_store

    cfg, proj, registry = _connector_config("destination", dest_name, type_name,
                                            config_file, project)
    if about_:
        cls = registry.destination_class(cfg.type)
        _print_about(about("destination", cls,
                           _plugin_version(registry, "destinations", cfg.type),
                           TARGET_CAPABILITIES), fmt)
        return
    # Syncs named with --sync come from conn.yml; otherwise one sync per Singer stream.
    declared: dict[str, SyncConfig] = {}
    if sync_names:
        if proj is None:
            raise ConfigError("--sync needs a conn.yml (--project); in type mode every "
                              "Singer stream is loaded with --object/--mode")
        for n in sync_names:
            if n not in proj.syncs:
                raise ConfigError(f"unknown sync {n!r} (declared: {', '.join(proj.syncs)})",
                                  file=str(proj.file), path="syncs")
            s = proj.syncs[n]
            if s.destination != cfg.name:
                raise ConfigError(f"sync {n!r} sends to {s.destination!r}, not {cfg.name!r}",
                                  file=str(proj.file), path=f"syncs.{n}.destination")
            if s.stream is None:
                raise ConfigError(f"sync {n!r} uses a query; for 'conn singer target' its "
                                  f"'stream' names the Singer stream", file=str(proj.file),
                                  path=f"syncs.{n}")
            if s.stream in declared:
                raise ConfigError(f"syncs {declared[s.stream].name!r} and {n!r} both read "
                                  f"Singer stream {s.stream!r}", file=str(proj.file))
            declared[s.stream] = dataclasses.replace(s, source=STDIN_SOURCE, query=None)
    elif cfg.purposes:
        raise ConfigError(
            f"destination {cfg.name!r} declares purposes {list(cfg.purposes)}: rows reach "
            f"it only through a sync's consent settings. Name a sync with --sync NAME (its "
            f"'stream' is the Singer stream; consent comes from its columns or consent "
            f"source); 'conn singer target' never bypasses the consent gate",
            file=str(proj.file) if proj else None, path=f"destinations.{cfg.name}.purposes")

    if proj is None:
        root = Path(state_dir).resolve() if state_dir else Path.cwd() / ".conn"
        proj = Project(file=Path.cwd() / "conn.yml", sources={},
                       destinations={cfg.name: cfg}, syncs={}, state={"url": str(root)})
    elif state_dir:
        proj = dataclasses.replace(proj, state={**proj.state, "url": str(Path(state_dir)
                                                                         .resolve())})
    proj = dataclasses.replace(proj, destinations={**proj.destinations, cfg.name: cfg})
    default_obj, obj_map = _parse_objects(objects)
    dest_objects: list[str] | None = None

    def object_for(stream: str) -> str:
        nonlocal dest_objects
        if stream in obj_map:
            return obj_map[stream]
        if default_obj:
            return default_obj
        if dest_objects is None:
            d = _instantiate("destination", cfg, registry,
                             proj if proj.file.exists() else None)
            try:
                dest_objects = [o.name for o in d.objects()]
            finally:
                d.close()
        if stream in dest_objects:
            return stream
        raise ConfigError(f"destination {cfg.name!r} has no object {stream!r} for Singer "
                          f"stream {stream!r} (objects: {', '.join(dest_objects) or 'none'}); "
                          f"choose one with --object OBJECT or --object {stream}=OBJECT")

    identity: list[str] = []

    def sync_for(stream: str, msg: Mapping[str, Any]) -> SyncConfig | None:
        schema_keys = tuple(msg.get("key_properties") or ())
        if sync_names:
            sync = declared.get(stream)
            if sync is None or sync.primary_key or schema_keys:
                return sync
            if primary_key:
                return dataclasses.replace(sync, primary_key=tuple(primary_key))
            raise ConfigError(
                f"Singer stream {stream!r} has no key_properties in its SCHEMA and sync "
                f"{sync.name!r} sets no primary_key: conn plans changes by primary key. Set "
                f"'primary_key' for the sync, or pass --primary-key COLUMN (repeat it for "
                f"a composite key)", file=str(proj.file), path=f"syncs.{sync.name}")
        keys = tuple(primary_key) or schema_keys
        if not keys:
            raise ConfigError(
                f"Singer stream {stream!r} has no key_properties in its SCHEMA: conn plans "
                f"changes by primary key. Name the key column(s) with --primary-key COLUMN "
                f"(repeat it for a composite key)")
        if not identity:
            identity.append(loader_identity(cfg, type_name, loader, registry))
        part = _state_prefix(identity[0], type_name, stream, store, proj)
        return SyncConfig(name=f"singer-{part}-{stream}", source=STDIN_SOURCE,
                          destination=cfg.name, object=object_for(stream), stream=stream,
                          primary_key=keys, match_key=match_key, mode=mode or "upsert",
                          batch_rows=batch_rows)

    syncs: dict[str, SyncConfig | None] = {}

    def wanted(stream: str, msg: dict[str, Any]) -> bool:
        if stream not in syncs:
            syncs[stream] = sync_for(stream, msg)
        return syncs[stream] is not None

    out = _out()

    def emit(value: Any) -> None:
        out.write(sp.dumps(value) + b"\n")
        out.flush()

    fh = open(input_file, "rb") if input_file else sys.stdin.buffer  # noqa: SIM115
    singer_input = SingerInput(fh, emit, wanted)
    options = RunOptions(full_resync=full_resync, batch_rows=batch_rows)
    registry.load_observers()
    run = RunInfo.new(proj.dir, [], full_resync=full_resync)
    report = RunReport(run)
    store = open_state_store(proj, registry)
    registry.hook.run_started(run=run)
    runner_cls = _runner_class()
    failed: SyncReport | None = None
    try:
        while True:
            stream = singer_input.next_stream()
            if stream is None:
                break
            sync = syncs[stream]
            assert sync is not None
            run.syncs.append(sync.name)
            project_for = dataclasses.replace(proj, syncs={**proj.syncs, sync.name: sync})
            runner = runner_cls(project_for, sync, registry, store, run, options)
            runner.stdin_source = StdinSingerSource(singer_input, stream, sync.primary_key)
            rep = runner.run()
            report.syncs.append(rep)
            ok = rep.status in ("ok", "rejected")
            singer_input.finish(stream, ok)
            log.info("sync %s: %s (%d read, %d inserted, %d updated, %d unchanged, "
                     "%d withheld by consent, %d rejected)", sync.name, rep.status,
                     rep.rows_read, rep.inserted, rep.updated, rep.unchanged,
                     rep.consent_denied, rep.rejected)
            if not ok:
                failed = rep
                break
        if failed is None:
            singer_input.release()
    finally:
        import time

        report.finished_at = time.time()
        registry.hook.run_finished(run=run, report=report)
        store.close()
        singer_input.close()
        if input_file:
            fh.close()
    for rep in report.syncs:
        sys.stderr.write(f"conn singer target: {rep.name}: {rep.status}, read "
                         f"{rep.rows_read}, inserted {rep.inserted}, updated {rep.updated}, "
                         f"unchanged {rep.unchanged}, withheld by consent "
                         f"{rep.consent_denied}, rejected {rep.rejected}\n")
    if failed is not None:
        raise ConnError(f"sync {failed.name!r} failed: {failed.error}; the STATE after the "
                        f"unacknowledged rows was not emitted")
    if any(r.status == "rejected" for r in report.syncs):
        log.warning("some rows were rejected; see 'conn rejected SYNC'")

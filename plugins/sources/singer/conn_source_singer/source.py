"""The ``singer`` source: runs a Singer tap as a subprocess and turns its messages into Arrow
record batches and conn bookmarks."""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
from conn import secrets
from conn.errors import CheckFailed, ConfigError, ConnError
from conn.singer.catalog import (
    apply_metadata,
    deselected_properties,
    select_streams,
    stream_key_properties,
    stream_replication_key,
    stream_replication_method,
    stream_selected,
)
from conn.singer.process import connector_name, resolve_command, tail, write_private_json
from conn.singer.protocol import RECORD_PREFIX, RecordConverter, SchemaMismatch, conform, loads
from conn.singer.schema import json_schema_to_arrow
from conn.source import Source, SourceState, StreamInfo

log = logging.getLogger(__name__)

class TapError(ConnError):
    """A Singer tap failed: it exited non-zero, printed something that is not a Singer
    message, or emitted a record its own schema does not allow."""


class SingerSource(Source):
    """Reads streams of any Singer tap.

    Each :meth:`read_batches` runs the tap once with only the requested stream selected,
    passing conn's stored bookmark as ``--state``. RECORD lines are buffered raw and
    converted to Arrow in bulk (``pyarrow.json``); a STATE message flushes the buffer and
    is yielded as a :class:`~conn.source.SourceState` after the batches it covers.
    """

    name = "singer"
    description = "Any Singer tap, run as a subprocess (e.g. from its own virtual environment)."
    config_schema = {
        "type": "object",
        "required": ["command"],
        "additionalProperties": False,
        "properties": {
            "command": {
                "description": "The tap executable: a path, or an argv list.",
                "oneOf": [{"type": "string", "minLength": 1},
                          {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            },
            "config": {"type": "object",
                       "description": "The tap's config, written to a private temp file for "
                                      "--config. Values under keys such as password, token, "
                                      "secret or api_key are treated as secrets."},
            "secret_fields": {"type": "array", "items": {"type": "string"},
                              "description": "Further dotted paths inside `config` whose "
                                             "values are secrets."},
            "select": {"type": "array", "items": {"type": "string"},
                       "description": "Streams to offer (default: every discovered stream)."},
            "catalog": {"type": ["object", "string"],
                        "description": "A catalog (object or path) used instead of --discover."},
            "catalog_flag": {"enum": ["--catalog", "--properties"], "default": "--catalog"},
            "metadata": {
                "type": "object", "additionalProperties": {"type": "object"},
                "description": "Catalog metadata overrides per stream, as Meltano's "
                               "`metadata` extra: keys are tap_stream_id patterns (`*` "
                               "wildcard); values set stream metadata (`replication-method`, "
                               "`replication-key`, `selected`, ...) and, under a property "
                               "name, that property's (`selected: false`)."},
            "env": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "Extra environment variables for the tap (secrets)."},
        },
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        if "command" not in self.config:
            raise ConfigError("singer source: missing required setting 'command'",
                              path="config.command")
        self.argv = resolve_command(self.config["command"])
        self.tap_name = connector_name(self.argv)
        tap_config = self.config.get("config") or {}
        secrets.register_config_secrets(tap_config, None)
        for dotted in self.config.get("secret_fields") or ():
            node: Any = tap_config
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                secrets.register(str(node))
        secrets.register(*(self.config.get("env") or {}).values())
        self._catalog: dict[str, Any] | None = None

    # --- helpers -------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.get("env") or {})
        return env

    def _fail(self, what: str, stream: str | None = None, line: int | None = None) -> TapError:
        where = f"singer tap {self.tap_name!r}"
        if stream is not None:
            where += f", stream {stream!r}"
        if line is not None:
            where += f", stdout line {line}"
        return TapError(secrets.redact(f"{where}: {what}"))

    def catalog(self) -> dict[str, Any]:
        """The tap's catalog (``config.catalog`` if given, else ``--discover``; cached) with
        the ``metadata`` overrides applied."""
        if self._catalog is None:
            overrides = self.config.get("metadata") or {}
            catalog = self._raw_catalog()
            self._catalog = apply_metadata(catalog, overrides) if overrides else catalog
        return self._catalog

    def _raw_catalog(self) -> dict[str, Any]:
        given = self.config.get("catalog")
        if isinstance(given, dict):
            return given
        if isinstance(given, str):
            try:
                return loads(Path(given).read_bytes())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read catalog {given!r}: {exc}",
                                  path="config.catalog") from exc
        with tempfile.TemporaryDirectory(prefix="conn-singer-") as tmp:
            cfg = write_private_json(Path(tmp, "config.json"), self.config.get("config") or {})
            err = Path(tmp, "stderr.log")
            try:
                with open(err, "wb") as errf:
                    proc = subprocess.run([*self.argv, "--config", cfg, "--discover"],
                                          stdout=subprocess.PIPE, stderr=errf,
                                          stdin=subprocess.DEVNULL, env=self._env(), check=False)
            except OSError as exc:
                raise self._fail(f"cannot start {self.argv[0]!r}: {exc}") from exc
            if proc.returncode != 0:
                raise self._fail(f"discovery exited with code {proc.returncode}; stderr "
                                 f"ends with:\n{tail(err)}")
        try:
            catalog = loads(proc.stdout)
        except ValueError as exc:
            raise self._fail(f"--discover did not print a JSON catalog: {exc}") from exc
        if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
            raise self._fail("--discover printed JSON without a 'streams' list")
        return catalog

    # --- Source duties ---------------------------------------------------------------------

    def check(self) -> None:
        try:
            streams = self.discover()
        except ConnError as exc:
            raise CheckFailed(str(exc)) from exc
        if not streams:
            raise CheckFailed(f"singer tap {self.tap_name!r} offers no (selected) streams")

    def discover(self) -> list[StreamInfo]:
        wanted = set(self.config.get("select") or ())
        out = []
        for entry in self.catalog()["streams"]:
            sid = entry.get("tap_stream_id") or entry.get("stream")
            if wanted and sid not in wanted and entry.get("stream") not in wanted:
                continue
            if not wanted and stream_selected(entry) is False:
                continue  # deselected by the catalog or a metadata override
            keys = tuple(stream_key_properties(entry))
            dropped = deselected_properties(entry)
            # Legacy taps declare every column nullable, keys included; a key is never
            # null (the planner rejects a row whose key is).
            schema = pa.schema([f.with_nullable(False) if f.name in keys else f
                                for f in json_schema_to_arrow(entry.get("schema") or {})
                                if f.name not in dropped])
            method = stream_replication_method(entry)
            cursor = stream_replication_key(entry) if method != "FULL_TABLE" else None
            out.append(StreamInfo(sid, schema, keys, cursor))
        if wanted:
            missing = wanted - {s.name for s in out}
            missing -= {e.get("stream") for e in self.catalog()["streams"]}
            if missing:
                raise ConfigError(f"singer tap {self.tap_name!r} has no stream(s) "
                                  f"{sorted(missing)}", path="config.select")
        return out

    def read_batches(self, stream: StreamInfo, state: Any | None,
                     batch_rows: int) -> Iterator[pa.RecordBatch | SourceState]:
        catalog = select_streams(self.catalog(), [stream.name])
        names = {stream.name}
        for entry in catalog["streams"]:
            if entry.get("tap_stream_id") == stream.name and entry.get("stream"):
                names.add(entry["stream"])
        with tempfile.TemporaryDirectory(prefix="conn-singer-") as tmp:
            cfg = self.config.get("config") or {}
            argv = [*self.argv, "--config", write_private_json(Path(tmp, "config.json"), cfg),
                    self.config.get("catalog_flag", "--catalog"),
                    write_private_json(Path(tmp, "catalog.json"), catalog)]
            if state is not None:
                argv += ["--state", write_private_json(Path(tmp, "state.json"), state)]
            err_path = Path(tmp, "stderr.log")
            with open(err_path, "wb") as errf:
                try:
                    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf,
                                            stdin=subprocess.DEVNULL, env=self._env(),
                                            bufsize=1 << 20)
                except OSError as exc:
                    raise self._fail(f"cannot start {self.argv[0]!r}: {exc}") from exc
                try:
                    yield from _Reader(self, stream, names, batch_rows, proc, err_path).run()
                finally:
                    if proc.poll() is None:
                        proc.kill()
                    proc.wait()
                    if proc.stdout:
                        proc.stdout.close()


class _Reader:
    """One run of a tap: parses its stdout, buffers RECORD lines, yields batches/bookmarks."""

    def __init__(self, source: SingerSource, stream: StreamInfo, names: set[str],
                 batch_rows: int, proc: subprocess.Popen[bytes], err_path: Path) -> None:
        self.source = source
        self.stream = stream
        self.names = names
        self.name_bytes = {n.encode() for n in names}
        self.batch_rows = max(1, batch_rows)
        self.proc = proc
        self.err_path = err_path
        self.converter: RecordConverter | None = None
        self.buf: list[bytes] = []
        self.buf_lines: list[int] = []
        self.schema_changes = 0

    def fail(self, what: str, line: int | None = None) -> TapError:
        return self.source._fail(what, self.stream.name, line)

    def flush(self) -> Iterator[pa.RecordBatch]:
        if not self.buf:
            return
        assert self.converter is not None
        try:
            batch = self.converter.from_lines(self.buf)
        except SchemaMismatch as exc:
            i, reason = self.converter.first_bad(self.buf)
            line = self.buf_lines[i] if i >= 0 else self.buf_lines[0]
            raise self.fail(f"record does not match the stream's schema: {reason or exc}",
                            line) from exc
        self.buf, self.buf_lines = [], []
        yield self.conform(batch)

    def conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if batch.schema.equals(self.stream.schema):
            return batch
        return conform(batch, self.stream.schema)

    def run(self) -> Iterator[pa.RecordBatch | SourceState]:
        assert self.proc.stdout is not None
        lineno = 0
        for raw in self.proc.stdout:
            lineno += 1
            line = raw.strip()
            if not line:
                continue
            m = RECORD_PREFIX.match(line)
            if m is not None:
                if m.group(1) not in self.name_bytes:
                    continue
                if self.converter is None:
                    raise self.fail("RECORD before any SCHEMA for the stream", lineno)
                self.buf.append(line)
                self.buf_lines.append(lineno)
                if len(self.buf) >= self.batch_rows:
                    yield from self.flush()
                continue
            try:
                msg = loads(line)
            except ValueError:
                raise self.fail(f"not a Singer message (invalid JSON): {line[:200]!r}",
                                lineno) from None
            if not isinstance(msg, dict) or "type" not in msg:
                raise self.fail(f"not a Singer message (no 'type'): {line[:200]!r}", lineno)
            kind = msg["type"]
            if kind == "RECORD":
                if msg.get("stream") not in self.names:
                    continue
                if self.converter is None:
                    raise self.fail("RECORD before any SCHEMA for the stream", lineno)
                self.buf.append(line)
                self.buf_lines.append(lineno)
                if len(self.buf) >= self.batch_rows:
                    yield from self.flush()
            elif kind == "SCHEMA":
                if msg.get("stream") not in self.names:
                    continue
                schema = msg.get("schema")
                if not isinstance(schema, dict):
                    raise self.fail("SCHEMA message without a schema object", lineno)
                if self.converter is not None and self.converter.json_schema == schema:
                    continue
                yield from self.flush()
                if self.converter is not None:
                    self.schema_changes += 1
                    log.info("singer tap %r stream %r: schema changed on line %d",
                             self.source.tap_name, self.stream.name, lineno)
                try:
                    self.converter = RecordConverter(schema)
                except Exception as exc:
                    raise self.fail(f"unusable SCHEMA: {exc}", lineno) from exc
            elif kind == "STATE":
                yield from self.flush()
                yield SourceState(msg.get("value"))
            elif kind == "BATCH":
                if msg.get("stream") not in self.names:
                    continue
                if self.converter is None:
                    raise self.fail("BATCH before any SCHEMA for the stream", lineno)
                yield from self.flush()
                yield from self.read_batch_files(msg, lineno)
            elif kind == "ACTIVATE_VERSION":
                # Full-table refresh marker: conn's planner detects rows gone from the
                # source itself (mirror mode), so the version needs no handling here.
                yield from self.flush()
            else:
                log.warning("singer tap %r: ignoring unknown message type %r on line %d",
                            self.source.tap_name, kind, lineno)
        rc = self.proc.wait()
        if rc != 0:
            raise self.fail(f"exited with code {rc}; stderr ends with:\n"
                            f"{tail(self.err_path)}")
        yield from self.flush()

    def read_batch_files(self, msg: dict[str, Any], lineno: int) -> Iterator[pa.RecordBatch]:
        assert self.converter is not None
        encoding = msg.get("encoding") or {}
        fmt = encoding.get("format", "jsonl")
        compression = encoding.get("compression") or "none"
        for url in msg.get("manifest") or ():
            parsed = urlparse(url)
            if parsed.scheme not in ("", "file"):
                raise self.fail(f"BATCH file {url!r}: only local file:// manifests are "
                                "supported", lineno)
            path = unquote(parsed.path) if parsed.scheme else url
            try:
                if fmt == "jsonl":
                    opener = gzip.open if compression == "gzip" else open
                    with opener(path, "rb") as fh:
                        chunk: list[bytes] = []
                        for rec_line in fh:
                            rec_line = rec_line.strip()
                            if rec_line:
                                chunk.append(rec_line)
                            if len(chunk) >= self.batch_rows:
                                yield self.batch_from_raw(chunk, url, lineno)
                                chunk = []
                        if chunk:
                            yield self.batch_from_raw(chunk, url, lineno)
                elif fmt == "parquet":
                    import pyarrow.parquet as pq

                    for b in pq.ParquetFile(path).iter_batches(batch_size=self.batch_rows):
                        yield self.conform(conform(b, self.converter.schema))
                else:
                    raise self.fail(f"BATCH format {fmt!r} is not supported", lineno)
            except OSError as exc:
                raise self.fail(f"cannot read BATCH file {url!r}: {exc}", lineno) from exc

    def batch_from_raw(self, lines: list[bytes], url: str, lineno: int) -> pa.RecordBatch:
        assert self.converter is not None
        try:
            return self.conform(self.converter.from_lines(lines, key=""))
        except SchemaMismatch as exc:
            i, reason = self.converter.first_bad(lines, key="")
            raise self.fail(f"BATCH file {url!r} record {i + 1} does not match the "
                            f"stream's schema: {reason or exc}", lineno) from exc

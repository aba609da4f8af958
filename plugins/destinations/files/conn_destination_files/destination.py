"""The ``files`` destination: a durable change log per object in JSONL, CSV or Parquet,
optionally materialised into a current snapshot.

Layout under ``path``::

    <object>.jsonl | <object>.csv        change log, one row per operation, column ``_op``
    <object>/part-000001.parquet ...     change log (Parquet: one part file per batch)
    _current/<object>.<ext>              snapshot, with ``materialize: true``

``erase`` (``conn forget``) rewrites those files without the person's rows (see
:mod:`conn_destination_files.erasure`).

pyarrow and DuckDB are imported inside methods so that registering the plugin stays cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from conn.destination import (
    MODES,
    Capabilities,
    Destination,
    ObjectInfo,
    WriteRequest,
    WriteResult,
)
from conn.errors import CheckFailed, ConfigError, ConnError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

#: Parquet codecs of the ``compression`` option.
PARQUET_CODECS = ("snappy", "zstd", "lz4", "gzip", "none")

FORMATS = ("jsonl", "csv", "parquet")
OP_COLUMN = "_op"
SNAPSHOT_DIR = "_current"
DEFAULT_OBJECT = "records"
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_PART = re.compile(r"^part-(\d+)\.parquet$")


def capabilities(fmt: str = "jsonl") -> Capabilities:
    """What every object of this destination supports. JSONL and CSV are text: values
    JSON cannot carry (NaN, ±Infinity, dates outside the years 0001-9999) are rejected
    per row by the mapper; Parquet holds any Arrow value."""
    from conn_destination_files.erasure import ERASURE

    # Events (mode: events) are for event APIs; a change log holds records.
    modes = frozenset(m for m in MODES if m != "events")
    return Capabilities(batch_size=100_000, modes=modes, supports_delete=True,
                        values="arrow" if fmt == "parquet" else "json", erasure=ERASURE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _repair_tail(path: Path) -> None:
    """Cut a partial last line left by a crash mid-write (that write was never
    acknowledged, so the runtime sends it again)."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        pos = size
        while pos > 0:
            step = min(65_536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                f.truncate(pos + nl + 1)
                return
        f.truncate(0)


@dataclass
class _ObjectLog:
    """Open state of one object's change log during a run."""

    path: Path
    handle: IO[bytes] | None = None
    header: list[str] | None = None
    next_part: int = 1
    match_key: str | None = None
    written: bool = False


#: Text a spreadsheet would read as a formula: starting with = + - @, tab or carriage
#: return (https://owasp.org/www-community/attacks/CSV_Injection).
_FORMULA_START = r"^[=+\-@\t\r]"
#: ... except a plain number (``-5``, ``+3.25``, ``-1e3``), which a spreadsheet reads as
#: the number it is.
_PLAIN_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def escape_formulas(table: pa.Table) -> pa.Table:
    """Prefix every text value a spreadsheet would run as a formula with ``'`` (OWASP's
    advice), which spreadsheets show but do not evaluate. Vectorised per column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        t = field.type
        if pa.types.is_dictionary(t) and pa.types.is_string(t.value_type):
            column, t = column.cast(pa.string()), pa.string()
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            risky = pc.and_kleene(pc.match_substring_regex(column, _FORMULA_START),
                                  pc.invert(pc.match_substring_regex(column, _PLAIN_NUMBER)))
            if pc.any(risky).as_py():
                quoted = pc.binary_join_element_wise(pa.scalar("'", t), column, "")
                column = pc.if_else(pc.fill_null(risky, False), quoted, column)
        columns.append(column)
    return pa.table(columns, names=table.schema.names)


class FilesDestination(Destination):
    """Writes every operation to an append-only change log file per object.

    Upserts, inserts, updates and appends are written as rows with an ``_op`` column;
    deletes (mirror mode, withdrawn consent) as rows holding the match key and
    ``_op: delete``. Each :meth:`write_batch` is durable (fsync) when it returns. With
    ``materialize: true`` a current snapshot (latest row per key, deletes removed) is
    rebuilt when the run ends.
    """

    name: ClassVar[str] = "files"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("base_dir", "path", "format")
    description: ClassVar[str] = "JSONL, CSV or Parquet change logs (and snapshots) on disk"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "properties": {
            "path": {"type": "string", "minLength": 1,
                     "description": "output folder (created if missing); relative to "
                                    "base_dir, else the current working directory"},
            "base_dir": {"type": "string", "minLength": 1},
            "format": {"enum": list(FORMATS), "default": "jsonl"},
            "materialize": {"type": "boolean", "default": False,
                            "description": "also keep _current/<object>.<ext>: the latest "
                                           "row per key, deleted keys removed"},
            "fsync": {"type": "boolean", "default": True,
                      "description": "fsync each write before acknowledging it"},
            "csv_escape_formulas": {
                "type": "boolean", "default": True,
                "description": "CSV: prefix text starting with = + - @ tab or carriage "
                               "return with a single quote, so a spreadsheet shows it "
                               "instead of running it as a formula (plain numbers such "
                               "as -5 are left alone)"},
            "compression": {"enum": list(PARQUET_CODECS), "default": "snappy",
                            "description": "Parquet codec; columns it would not shrink "
                                           "(hashes, random ids) are stored uncompressed"},
            "objects": {
                "type": "object",
                "propertyNames": {"pattern": _NAME_PATTERN},
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "fields": {"type": "object",
                                   "description": "JSON Schema (type object) of the fields"},
                        "identifiers": {"type": "array", "minItems": 1,
                                        "items": {"type": "string", "minLength": 1}},
                        "description": {"type": "string"},
                    },
                },
            },
        },
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        self._logs: dict[str, _ObjectLog] = {}
        self._duck: duckdb.DuckDBPyConnection | None = None

    # --- configuration ----------------------------------------------------------------

    @property
    def format(self) -> str:
        return str(self.config.get("format") or "jsonl")

    @property
    def root(self) -> Path:
        """The output folder, resolved against ``base_dir``, the project folder or the
        working directory."""
        p = Path(os.path.expanduser(str(self.config["path"])))
        if not p.is_absolute():
            p = Path(self.config.get("base_dir") or self.project_dir or os.getcwd()) / p
        return p

    def objects(self) -> list[ObjectInfo]:
        configured: dict[str, dict[str, Any]] = dict(self.config.get("objects") or {})
        configured.setdefault(DEFAULT_OBJECT, {})
        out = []
        for name, spec in configured.items():
            if not re.match(_NAME_PATTERN, name):
                raise ConfigError(f"destination {self.instance!r}: object name {name!r} "
                                  f"is not a safe file name", path=f"config.objects.{name}")
            idents = tuple(spec.get("identifiers") or ("id",))
            if spec.get("fields"):
                fields = {"type": "object", **spec["fields"]}
                missing = [i for i in idents if i not in fields.get("properties", {})]
                if missing:
                    raise ConfigError(
                        f"destination {self.instance!r}: object {name!r}: identifier(s) "
                        f"{missing} are not among its fields",
                        path=f"config.objects.{name}.identifiers",
                    )
            else:
                fields = {"type": "object", "additionalProperties": True,
                          "properties": {i: {"description": "match key"} for i in idents}}
            where = f"{name}/part-*.parquet" if self.format == "parquet" \
                else f"{name}.{self.format}"
            out.append(ObjectInfo(name, fields, idents, capabilities(self.format),
                                  description=spec.get("description")
                                  or f"change log {where} (one row per operation)"))
        return out

    # --- duties -----------------------------------------------------------------------

    def check(self) -> None:
        root = self.root
        probe = root / f".conn-check-{os.getpid()}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise CheckFailed(f"destination {self.instance!r}: cannot write to folder "
                              f"{root}: {exc.strerror or exc}") from exc

    def write_batch(self, request: WriteRequest) -> WriteResult:
        if request.dry_run:
            return WriteResult.ok()
        import pyarrow as pa
        import pyarrow.compute as pc

        if request.operation == "erase":
            self._erase(request)
            return WriteResult.ok()
        batch = request.records
        if OP_COLUMN in batch.schema.names:
            batch = batch.drop_columns([OP_COLUMN])
        n = batch.num_rows
        ops = pc.fill_null(pa.nulls(n, pa.string()), request.operation)
        table = pa.Table.from_batches([batch]).append_column(OP_COLUMN, ops)
        log = self._log(request.object.name)
        log.match_key = request.match_key
        if self.format == "parquet":
            self._write_parquet(log, table)
        else:
            reject = self._write_text(log, table)
            if reject:
                return WriteResult.all_rejected(n, reject, retryable=False)
        log.written = True
        return WriteResult.ok()

    def _erase(self, request: WriteRequest) -> None:
        """Rewrite the object's change log and snapshot without the rows of the keys
        (an open log handle is closed for the rewrite and reopened after it)."""
        from conn_destination_files.erasure import erase_rows

        name, key = request.object.name, request.match_key
        keys = request.records.column(0)
        root = self.root
        log = self._logs.get(name)
        if log is not None and log.handle is not None:
            log.handle.close()
            log.handle = None
        if self.format == "parquet":
            folder = root / name
            files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
        else:
            files = [root / f"{name}.{self.format}"]
            if files[0].exists():
                _repair_tail(files[0])
        files.append(root / SNAPSHOT_DIR / f"{name}.{self.format}")
        try:
            for path in files:
                erase_rows(path, self.format, key, keys, self._con(),
                           fsync=bool(self.config.get("fsync", True)),
                           write_parquet=self._parquet_file)
        finally:
            if log is not None and self.format != "parquet":
                log.handle = open(log.path, "ab")  # noqa: SIM115 - closed in close()

    def _parquet_file(self, table: pa.Table, path: Path) -> None:
        """Write ``table`` to ``path`` as the log's part files are written."""
        import pyarrow.parquet as pq

        dictionary = dictionary_columns(table)
        codec = str(self.config.get("compression") or "snappy")
        pq.write_table(table, path, use_dictionary=dictionary,
                       compression=column_codecs(table, codec, dictionary))

    def close(self) -> None:
        try:
            for name, log in self._logs.items():
                if log.handle is not None:
                    log.handle.close()
                    log.handle = None
                if log.written and self.config.get("materialize"):
                    self._materialize(name, log)
        finally:
            self._logs.clear()
            if self._duck is not None:
                self._duck.close()
                self._duck = None

    # --- writing ----------------------------------------------------------------------

    def _con(self) -> duckdb.DuckDBPyConnection:
        if self._duck is None:
            import duckdb

            self._duck = duckdb.connect()
            self._duck.execute("set threads = 1")  # keeps scan order = file order
        return self._duck

    def _log(self, name: str) -> _ObjectLog:
        log = self._logs.get(name)
        if log is not None:
            return log
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        if self.format == "parquet":
            folder = root / name
            folder.mkdir(exist_ok=True)
            parts = [int(m.group(1)) for f in os.listdir(folder) if (m := _PART.match(f))]
            log = _ObjectLog(folder, next_part=max(parts, default=0) + 1)
        else:
            path = root / f"{name}.{self.format}"
            existed = path.exists()
            if existed:
                _repair_tail(path)
            handle = open(path, "ab")  # noqa: SIM115 - closed in close()
            log = _ObjectLog(path, handle=handle)
            if not existed:
                self._sync(handle)
                _fsync_dir(root)
            if self.format == "csv" and path.stat().st_size:
                import pyarrow.csv as pcsv

                log.header = pcsv.open_csv(path).schema.names
        self._logs[name] = log
        return log

    def _sync(self, handle: IO[bytes]) -> None:
        handle.flush()
        if self.config.get("fsync", True):
            os.fsync(handle.fileno())

    def _write_text(self, log: _ObjectLog, table: pa.Table) -> str | None:
        """Append ``table`` to a JSONL or CSV log; a reason when the rows cannot fit."""
        import io

        import pyarrow as pa

        table = self._binaries_as_base64(table)
        if self.format == "jsonl":
            data = self._jsonl_bytes(table)
        else:
            import pyarrow.csv as pcsv

            nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
            if nested:
                return (f"CSV cannot hold nested field(s) {nested}; map them to text or use "
                        f"format jsonl or parquet")
            header = log.header
            new = header is None
            if header is None:
                header = log.header = table.schema.names
            extra = [c for c in table.schema.names if c not in header]
            if extra:
                return (f"field(s) {extra} are not columns of the existing CSV file "
                        f"{log.path}; CSV logs keep their first header: move the file aside "
                        f"or use format jsonl or parquet")
            n = table.num_rows
            table = pa.table({c: table[c] if c in table.schema.names else pa.nulls(n)
                              for c in header})
            if self.config.get("csv_escape_formulas", True):
                table = escape_formulas(table)
            sink = io.BytesIO()
            pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=new))
            data = sink.getvalue()
        assert log.handle is not None
        start = log.handle.tell()
        try:
            log.handle.write(data)
            self._sync(log.handle)
        except BaseException:
            # Nothing of this batch is acknowledged: leave the log as it was.
            log.handle.truncate(start)
            if self.format == "csv" and start == 0:
                log.header = None
            raise
        return None

    def _binaries_as_base64(self, table: pa.Table) -> pa.Table:
        """Top-level binary columns as base64 text: text logs hold no raw bytes, and
        DuckDB would otherwise write them with ``\\xNN`` escapes, a rewrite nobody can
        tell from text."""
        import pyarrow as pa

        binary = [f.name for f in table.schema if pa.types.is_binary(f.type)
                  or pa.types.is_large_binary(f.type) or pa.types.is_fixed_size_binary(f.type)]
        if not binary:
            return table
        con = self._con()
        con.register("_conn_bin", table)
        try:
            swap = ", ".join(f"to_base64({_q(c)}::BLOB) AS {_q(c)}" for c in binary)
            return _arrow_table(con.sql(f"select * replace ({swap}) from _conn_bin"))
        finally:
            con.unregister("_conn_bin")

    def _jsonl_bytes(self, table: pa.Table) -> bytes | memoryview:
        """One JSON object per row, newline-terminated, encoded without a Python loop."""
        import pyarrow as pa
        import pyarrow.compute as pc

        con = self._con()
        con.register("_conn_batch", table)
        try:
            lines = con.sql("select to_json(_conn_batch) from _conn_batch")
            col = _arrow_table(lines).column(0).combine_chunks()
        finally:
            con.unregister("_conn_batch")
        offsets = pa.array([0, len(col)], pa.int64() if pa.types.is_large_string(col.type)
                           else pa.int32())
        cls = pa.LargeListArray if pa.types.is_large_string(col.type) else pa.ListArray
        joined = pc.binary_join(cls.from_arrays(offsets, col), "\n")[0]
        return bytes(joined.as_buffer()) + b"\n"

    def _write_parquet(self, log: _ObjectLog, table: pa.Table) -> None:
        """Write one part file per batch: complete and durable when this returns."""

        final = log.path / f"part-{log.next_part:06d}.parquet"
        tmp = log.path / f".{final.name}.tmp"
        try:
            self._parquet_file(table, tmp)
            if self.config.get("fsync", True):
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, final)
            if self.config.get("fsync", True):
                _fsync_dir(log.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        log.next_part += 1

    # --- snapshot ---------------------------------------------------------------------

    def _scan(self, log: _ObjectLog) -> tuple[str, str]:
        """DuckDB table expression over the log, and the column giving log order."""
        p = str(log.path).replace("'", "''")
        if self.format == "parquet":
            return (f"(select *, row_number() over (order by filename, file_row_number) "
                    f"as _conn_n from read_parquet('{p}/part-*.parquet', union_by_name=true, "
                    f"filename=true, file_row_number=true))"), "_conn_n"
        if self.format == "csv":
            scan = f"read_csv('{p}', header=true, all_varchar=true)"
        else:
            scan = f"read_json('{p}', format='newline_delimited', sample_size=-1)"
        return f"(select *, row_number() over () as _conn_n from {scan})", "_conn_n"

    def _materialize(self, name: str, log: _ObjectLog) -> None:
        """Rebuild ``_current/<name>.<ext>``: the latest row per match key, without deleted
        keys, plus every appended row, in log order. DuckDB spills to disk when needed."""
        import duckdb

        con = self._con()
        scan, order = self._scan(log)
        extra = ["filename", "file_row_number"] if self.format == "parquet" else []
        try:
            cols = con.sql(f"select * from {scan} limit 0").columns
            key = log.match_key
            drop = ", ".join(_q(c) for c in [OP_COLUMN, order, *extra] if c in cols)
            if key and key in cols:
                body = (
                    f"select * from (select * from {scan} where {_q(OP_COLUMN)} <> 'append' "
                    f"qualify row_number() over (partition by cast({_q(key)} as varchar) "
                    f"order by {order} desc) = 1) where {_q(OP_COLUMN)} <> 'delete' "
                    f"union all by name select * from {scan} where {_q(OP_COLUMN)} = 'append'"
                )
            else:
                body = f"select * from {scan} where {_q(OP_COLUMN)} = 'append'"
            query = f"select * exclude ({drop}) from ({body}) order by {order}"
            folder = self.root / SNAPSHOT_DIR
            folder.mkdir(exist_ok=True)
            final = folder / f"{name}.{self.format}"
            tmp = folder / f".{final.name}.tmp"
            fmt = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}[self.format]
            opts = ", header true" if fmt == "csv" else ""
            t = str(tmp).replace("'", "''")
            con.execute(f"copy ({query}) to '{t}' (format {fmt}{opts})")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(folder)
        except (duckdb.Error, OSError) as exc:
            raise ConnError(f"destination {self.instance!r}: could not materialise object "
                            f"{name!r} from {log.path}: {exc}") from exc


#: Rows of a column sampled to decide on dictionary encoding.
DICTIONARY_SAMPLE = 2048
#: Bytes of a column's first values compressed to decide whether the codec pays.
COMPRESSION_SAMPLE = 64 * 1024
#: A column is compressed only if the sample shrinks to at most this fraction.
COMPRESSION_WORTH = 0.9


def column_codecs(table: pa.Table, codec: str, dictionary: list[str]) -> dict[str, str]:
    """The codec per column: ``codec``, or ``none`` for a plain-encoded column whose first
    :data:`COMPRESSION_SAMPLE` bytes of values ``codec`` shrinks by less than 10 %.
    SHA-256 hex digests, for instance, lose 3 % to Snappy for a third of a Parquet
    write's time (700,000 mapped customer rows: ~60 ms). Dictionary-encoded columns
    (small index pages) and other layouts keep ``codec``."""
    import pyarrow as pa

    out = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_nested(col.type):
            # Per-column codecs name Parquet's leaf columns (``tags.list.element``); a
            # leaf left out of the dict would be written uncompressed.
            out.update(dict.fromkeys(_leaf_paths(table.select([name])), codec))
            continue
        sample = None if codec == "none" or name in dictionary else _value_bytes(col)
        if sample is not None and len(sample) >= 1024:
            packed = pa.compress(sample, codec=codec, asbytes=False)
            out[name] = codec if len(packed) <= COMPRESSION_WORTH * len(sample) else "none"
        else:
            out[name] = codec
    return out


def _leaf_paths(table: pa.Table) -> list[str]:
    """The Parquet leaf column paths of ``table`` (as written by pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table.slice(0, 0), sink)
    schema = pq.read_metadata(pa.BufferReader(sink.getvalue())).schema
    return [schema.column(i).path for i in range(len(schema))]


def _value_bytes(col: pa.ChunkedArray) -> pa.Buffer | None:
    """Up to :data:`COMPRESSION_SAMPLE` bytes of the column's first values (strings and
    fixed-width types), or None."""
    import pyarrow as pa

    chunks = [c for c in col.chunks if len(c)]
    if not chunks or chunks[0].null_count:
        return None  # (nulls leave gaps of stale bytes: no fair sample)
    arr = chunks[0]
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) \
            or pa.types.is_large_binary(t):
        import numpy as np

        wide = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
        offsets = np.frombuffer(arr.buffers()[1], np.int64 if wide else np.int32,
                                count=len(arr) + 1, offset=arr.offset * (8 if wide else 4))
        start = int(offsets[0])
        end = min(int(offsets[-1]), start + COMPRESSION_SAMPLE)
        return arr.buffers()[2].slice(start, end - start)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_temporal(t):
        width = t.bit_width // 8
        if not width:
            return None
        n = min(len(arr), COMPRESSION_SAMPLE // width)
        return arr.buffers()[1].slice(arr.offset * width, n * width)
    return None


def dictionary_columns(table: pa.Table) -> list[str]:
    """Columns worth dictionary-encoding in Parquet: those whose first
    :data:`DICTIONARY_SAMPLE` rows repeat values (at most half distinct). Arrow's writer
    otherwise tries every column and gives up on the ones with unique values (ids,
    hashed e-mails, amounts) only after building a large dictionary: 0.32 -> 0.25 s for
    700,000 mapped customer rows, and smaller files."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chosen = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_dictionary(col.type):
            chosen.append(name)
            continue
        if pa.types.is_nested(col.type):
            continue  # left to the writer's plain encoding
        sample = col.slice(0, DICTIONARY_SAMPLE)
        if len(sample) and pc.count_distinct(sample, mode="all").as_py() * 2 <= len(sample):
            chosen.append(name)
    return chosen


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _arrow_table(relation: Any) -> pa.Table:
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    return fetch()

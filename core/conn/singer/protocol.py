"""The Singer wire format: JSON encoding, SCHEMA/RECORD/STATE message lines, Arrow record
batches as RECORD lines and RECORD lines as Arrow record batches, both in bulk.

Only pyarrow and the standard library are required; ``orjson`` is used when installed
(both Singer plugins depend on it), which makes encoding several times faster.

Stream schemas are converted by :mod:`conn.singer.schema` (the type mapping), catalogs
read by :mod:`conn.singer.catalog`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import decimal
import io
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import pyarrow as pa

from conn.singer.schema import json_schema_to_arrow

_orjson: ModuleType | None
try:  # optional fast path
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None

#: Column a Singer target reads as a soft delete.
DELETED_AT = "_sdc_deleted_at"

#: The start of a RECORD line as taps write it, capturing the stream's name: RECORD lines
#: are routed by stream without being decoded.
RECORD_PREFIX = re.compile(
    rb'^\{\s*"type"\s*:\s*"RECORD"\s*,\s*"stream"\s*:\s*"([^"\\]*)"\s*,')


class SchemaMismatch(ValueError):
    """A record does not fit the Arrow schema derived from its stream's JSON Schema."""


# --- JSON encoding --------------------------------------------------------------------------


#: A JSON number as text: optional minus, integer part, fraction, exponent (RFC 8259).
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def exact_number(text: str) -> Any:
    """An object the encoder writes as the JSON number ``text`` itself (a decimal's exact
    digits: ``6.85`` stays ``6.85``, never ``6.8500000000000005``)."""
    if not _JSON_NUMBER.fullmatch(text):
        raise ValueError(f"{text!r} is not a number JSON can carry")
    return _raw_number(text)


def _default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        return exact_number(str(obj))
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, _dt.datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=_dt.UTC)
        return obj.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(obj, _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


if _orjson is not None:
    # A name the functions below see as never None (a check of the global does not
    # carry into them).
    _fast: ModuleType = _orjson
    _OPTS = _fast.OPT_NAIVE_UTC | _fast.OPT_UTC_Z

    def _raw_number(text: str) -> Any:
        return _fast.Fragment(text)

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (datetimes as RFC 3339 UTC, decimals as exact numbers)."""
        return _fast.dumps(obj, default=_default, option=_OPTS)

    loads: Callable[[bytes | str], Any] = _fast.loads
else:  # pragma: no cover - exercised where orjson is absent
    # The standard encoder cannot write raw text: a number travels as a string behind a
    # per-process marker that no data can guess, and the quotes are dropped afterwards.
    _MARK = f"\x00conn-number-{uuid.uuid4().hex}:"
    _MARKED = re.compile(r'"\\u0000conn-number-[0-9a-f]{32}:([-+.0-9eE]+)"')

    def _raw_number(text: str) -> Any:
        return _MARK + text

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (datetimes as RFC 3339 UTC, decimals as exact numbers)."""
        text = json.dumps(obj, default=_default, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
        if _MARK[1:] in text:
            text = _MARKED.sub(r"\1", text)
        return text.encode()

    loads = json.loads


def schema_message(stream: str, schema: Mapping[str, Any], key_properties: Sequence[str] = (),
                   bookmark_properties: Sequence[str] | None = None) -> bytes:
    """A SCHEMA message line (with trailing newline)."""
    msg: dict[str, Any] = {"type": "SCHEMA", "stream": stream, "schema": schema,
                           "key_properties": list(key_properties)}
    if bookmark_properties:
        msg["bookmark_properties"] = list(bookmark_properties)
    return dumps(msg) + b"\n"


def state_message(value: Any) -> bytes:
    """A STATE message line."""
    return dumps({"type": "STATE", "value": value}) + b"\n"


def record_lines(stream: str, batch: pa.RecordBatch | pa.Table,
                 extra: Mapping[str, Any] | None = None) -> bytes:
    """RECORD message lines for every row of ``batch`` (bulk: one ``to_pylist`` and one
    compact encoder call per row; ``extra`` fields are added to every record)."""
    prefix = b'{"type":"RECORD","stream":' + dumps(stream) + b',"record":'
    rows = batch.to_pylist()
    if extra:
        for row in rows:
            row.update(extra)
    out = io.BytesIO()
    w = out.write
    for row in rows:
        w(prefix)
        w(dumps(row))
        w(b"}\n")
    return out.getvalue()


# --- Arrow → RECORD lines (fast path for ``conn singer tap``) ------------------------------


def _rfc3339(arr: pa.Array) -> pa.Array:
    """Timestamps as RFC 3339 UTC strings (naive values are taken as UTC), vectorised."""
    import pyarrow.compute as pc

    t = arr.type
    if t.tz is not None and t.tz not in ("UTC", "+00:00", "Z"):
        arr = arr.cast(pa.timestamp(t.unit, "UTC"))
    return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%SZ")


def json_ready(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """``batch`` with top-level temporal and decimal columns turned into their JSON wire
    form in Arrow (timestamps → RFC 3339 UTC strings, dates/times → ISO strings, decimals →
    their exact digits as text, durations → seconds), so that row encoding needs no
    Python ``datetime`` or ``Decimal`` objects. :func:`encode_records` writes the decimal
    text as JSON numbers. Nested values are left to the encoder's default handler."""
    import pyarrow.compute as pc

    cols, changed = [], False
    for i, f in enumerate(batch.schema):
        col = batch.column(i)
        t = f.type
        chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
        if pa.types.is_timestamp(t):
            new = [_rfc3339(c) for c in chunks]
        elif pa.types.is_date(t) or pa.types.is_time(t):
            new = [c.cast(pa.string()) for c in chunks]
        elif pa.types.is_decimal(t):
            # Arrow's decimal text is a valid JSON number ("6.85", "-0.10", "1.00E-8").
            new = [c.cast(pa.string()) for c in chunks]
        elif pa.types.is_duration(t):
            new = [pc.divide(c.cast(pa.int64()).cast(pa.float64()),
                             {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[t.unit])
                   for c in chunks]
        else:
            cols.append(col)
            continue
        changed = True
        cols.append(pa.chunked_array(new) if isinstance(col, pa.ChunkedArray) else new[0])
    if not changed:
        return batch
    if isinstance(batch, pa.Table):
        return pa.Table.from_arrays(cols, names=batch.schema.names)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def encode_records(stream: str, batch: pa.RecordBatch | pa.Table,
                   time_extracted: str | None = None) -> bytes:
    """RECORD message lines for every row of ``batch``, in bulk: temporal columns are
    rendered to RFC 3339 in Arrow (:func:`json_ready`), then each row is encoded once.
    JSON-text columns (``singer.json`` metadata) are emitted as their decoded values,
    decimals as JSON numbers with their exact digits. Check the batch with
    :func:`json_problem` first: NaN, ±Infinity and dates outside the years 0001-9999
    have no JSON form."""
    ready = json_ready(batch)
    json_cols = [f.name for f in batch.schema
                 if f.metadata and f.metadata.get(b"singer.json") == b"true"]
    decimal_cols = [f.name for f in batch.schema if pa.types.is_decimal(f.type)]
    tail = b"}\n" if time_extracted is None else \
        b',"time_extracted":' + dumps(time_extracted) + b"}\n"
    prefix = b'{"type":"RECORD","stream":' + dumps(stream) + b',"record":'
    rows = ready.to_pylist()
    if json_cols:
        for row in rows:
            for c in json_cols:
                v = row.get(c)
                if isinstance(v, str):
                    with contextlib.suppress(ValueError):
                        row[c] = loads(v)
    if decimal_cols:
        raw = _raw_number
        for row in rows:
            for c in decimal_cols:
                v = row[c]
                if v is not None:
                    row[c] = raw(v)
    out = io.BytesIO()
    w = out.write
    for row in rows:
        w(prefix)
        w(dumps(row))
        w(tail)
    return out.getvalue()


def json_problem(batch: pa.RecordBatch | pa.Table) -> tuple[int, str] | None:
    """The first row of ``batch`` holding a value JSON cannot carry exactly (NaN,
    ±Infinity, a date outside the years 0001-9999, at any depth) and the reason, or
    None. Vectorised (:mod:`conn.mapping.carry`)."""
    from conn.mapping.carry import json_failures

    first: tuple[int, str] | None = None
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        for mask, reason in json_failures(name, col):
            row = int(mask.argmax())
            if first is None or row < first[0]:
                first = (row, reason)
    return first


# --- RECORD lines → Arrow ---------------------------------------------------------------------


def _wire_type(t: pa.DataType) -> pa.DataType:
    """Type read from JSON text before the final cast (dates and timestamps as strings)."""
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([_wire_field(t.field(i)) for i in range(t.num_fields)])
    if pa.types.is_list(t):
        return pa.list_(_wire_field(t.value_field))
    return t


def _wire_field(f: pa.Field) -> pa.Field:
    return pa.field(f.name, _wire_type(f.type), nullable=True, metadata=f.metadata)


def _has_json(t: pa.DataType | pa.Field) -> bool:
    if isinstance(t, pa.Field):
        if t.metadata and t.metadata.get(b"singer.json") == b"true":
            return True
        t = t.type
    if pa.types.is_struct(t):
        return any(_has_json(t.field(i)) for i in range(t.num_fields))
    if pa.types.is_list(t):
        return _has_json(t.value_field)
    return False


def _fixer(field: pa.Field) -> Callable[[Any], Any] | None:
    """A function making a JSON value fit ``field`` for ``from_pylist`` (encodes JSON-text
    columns), or None when the value needs nothing."""
    if field.metadata and field.metadata.get(b"singer.json") == b"true":
        return lambda v: v if v is None or isinstance(v, str) else dumps(v).decode()
    t = field.type
    if pa.types.is_struct(t):
        fixers = {t.field(i).name: _fixer(t.field(i)) for i in range(t.num_fields)}
        subs = {k: f for k, f in fixers.items() if f is not None}
        if not subs:
            return None

        def fix_struct(v: Any) -> Any:
            if isinstance(v, dict):
                v = dict(v)
                for k, f in subs.items():
                    if k in v:
                        v[k] = f(v[k])
            return v
        return fix_struct
    if pa.types.is_list(t):
        sub = _fixer(t.value_field)
        if sub is None:
            return None
        return lambda v: [sub(x) for x in v] if isinstance(v, list) else v
    return None


def _cast_array(arr: pa.Array, target: pa.DataType) -> pa.Array:
    if arr.type == target:
        return arr
    if pa.types.is_timestamp(target) and pa.types.is_string(arr.type):
        try:
            return arr.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Some timestamps lack a zone offset: read those as UTC.
            import pyarrow.compute as pc

            zoned = pc.match_substring_regex(arr, r"(?i)(z|[+-]\d\d(:?\d\d)?)$")
            fixed = pc.if_else(zoned, arr, pc.binary_join_element_wise(arr, "Z", ""))
            return fixed.cast(target)
    return arr.cast(target)


class RecordConverter:
    """Converts a stream's records into Arrow batches of the schema derived from its JSON
    Schema, in bulk.

    Fast path (no JSON-text columns): the raw RECORD lines are concatenated and parsed by
    ``pyarrow.json.read_json`` with an explicit schema (multi-threaded C++), then dates and
    timestamps are cast from strings. Otherwise each line is decoded (orjson when
    installed), JSON-text columns encoded, and the rows built with ``from_pylist``.
    """

    def __init__(self, json_schema: Mapping[str, Any], arrow_schema: pa.Schema | None = None):
        self.json_schema = json_schema
        self.schema = arrow_schema if arrow_schema is not None else \
            json_schema_to_arrow(json_schema)
        self.wire = pa.schema([_wire_field(f) for f in self.schema])
        self.bulk = not any(_has_json(f) for f in self.schema)
        fixers = {f.name: _fixer(f) for f in self.schema}
        self._fixers = {k: v for k, v in fixers.items() if v is not None}

    def empty(self) -> pa.RecordBatch:
        """A batch with no rows and the stream's schema."""
        return pa.RecordBatch.from_pylist([], schema=self.schema)

    def from_lines(self, lines: Sequence[bytes], *, key: str = "record") -> pa.RecordBatch:
        """Convert RECORD message lines (``key`` = ``"record"``) or raw record lines
        (``key=""``, as in BATCH files). Raises :class:`SchemaMismatch`."""
        if not lines:
            return self.empty()
        try:
            if self.bulk:
                wire_batch = self._read_json(lines, key)
            else:
                rows = [loads(line) for line in lines]
                wire_batch = self.from_rows([r.get(key) if key else r for r in rows], wire=True)
            return self._finish(wire_batch)
        except SchemaMismatch:
            raise
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
                ValueError, TypeError, AttributeError) as exc:
            raise SchemaMismatch(str(exc)) from exc

    def from_rows(self, rows: Sequence[Any], *, wire: bool = False) -> pa.RecordBatch:
        """Convert decoded record dicts (with dates and timestamps still as strings)."""
        if self._fixers:
            fixed = []
            for r in rows:
                if isinstance(r, dict):
                    r = dict(r)
                    for k, f in self._fixers.items():
                        if k in r:
                            r[k] = f(r[k])
                fixed.append(r)
            rows = fixed
        for r in rows:
            if not isinstance(r, dict):
                raise SchemaMismatch(f"record is {type(r).__name__}, not an object")
        try:
            batch = pa.RecordBatch.from_pylist(list(rows), schema=self.wire)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise SchemaMismatch(str(exc)) from exc
        return batch if wire else self._finish(batch)

    def _read_json(self, lines: Sequence[bytes], key: str) -> pa.RecordBatch:
        import pyarrow.json as pj

        data = b"\n".join(lines)
        explicit = pa.schema([pa.field(key, pa.struct(list(self.wire)))]) if key else self.wire
        table = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(block_size=max(1 << 20, min(len(data) + 1, 1 << 26))),
            parse_options=pj.ParseOptions(explicit_schema=explicit,
                                          unexpected_field_behavior="ignore"),
        )
        if key:
            col = table.column(key).combine_chunks()
            return pa.RecordBatch.from_struct_array(col) if len(col) else \
                pa.RecordBatch.from_pylist([], schema=self.wire)
        return table.combine_chunks().to_batches()[0] if table.num_rows else \
            pa.RecordBatch.from_pylist([], schema=self.wire)

    def _finish(self, wire_batch: pa.RecordBatch) -> pa.RecordBatch:
        arrays = []
        for f in self.schema:
            idx = wire_batch.schema.get_field_index(f.name)
            arr = wire_batch.column(idx) if idx >= 0 else pa.nulls(wire_batch.num_rows, f.type)
            try:
                arr = _cast_array(arr, f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatch(f"field {f.name!r}: {exc}") from exc
            if not f.nullable and arr.null_count:
                raise SchemaMismatch(f"field {f.name!r} is required but missing or null")
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def first_bad(self, lines: Sequence[bytes], *, key: str = "record") -> tuple[int, str]:
        """Index and reason of the first line that does not convert (slow; error path)."""
        for i, line in enumerate(lines):
            try:
                self.from_lines([line], key=key)
            except SchemaMismatch as exc:
                return i, str(exc)
        return -1, ""


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Shape ``batch`` like ``schema``: its columns in order (cast when possible, nulls when
    missing), then any extra columns of ``batch``."""
    arrays, fields = [], []
    for f in schema:
        idx = batch.schema.get_field_index(f.name)
        if idx < 0:
            arrays.append(pa.nulls(batch.num_rows, f.type))
            fields.append(f.with_nullable(True))
            continue
        arr = batch.column(idx)
        if arr.type != f.type:
            try:
                arr = _cast_array(arr, f.type)
                fields.append(f.with_nullable(True))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                fields.append(batch.schema.field(idx))
        else:
            fields.append(f if not arr.null_count else f.with_nullable(True))
        arrays.append(arr)
    for i, f in enumerate(batch.schema):
        if f.name not in schema.names:
            arrays.append(batch.column(i))
            fields.append(f)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))

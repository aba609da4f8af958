"""Singer protocol helpers shared by the ``singer`` source and destination plugins (and the
``conn singer`` commands): message encoding, JSON Schema ⇄ Arrow schema conversion and
bulk conversion of RECORD lines into Arrow record batches.

Only pyarrow and the standard library are required; ``orjson`` is used when installed
(both Singer plugins depend on it), which makes encoding several times faster.

Type mapping (JSON Schema → Arrow):

==========================================  =========================================
``integer``                                  ``int64``
``number`` (or ``integer`` + ``number``)     ``float64``
``boolean``                                  ``bool``
``string``                                   ``string``
``string`` + ``format: date-time``           ``timestamp[us, tz=UTC]`` (naive → UTC)
``string`` + ``format: date``                ``date32``
``object`` with ``properties``               ``struct`` (recursively)
``array`` with ``items``                     ``list<item>``
anything else (``{}``, mixed ``anyOf``,      ``string`` holding JSON text; the Arrow field
objects without properties, ...)             carries metadata ``singer.json = true``
==========================================  =========================================

``["null", T]``, ``anyOf: [T, {"type": "null"}]`` and similar make a nullable ``T``; a
top-level property without ``"null"`` is a non-nullable field (nested fields are always
nullable, since a null parent makes its children null).
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

try:  # optional fast path
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None

#: Field metadata marking a string column that holds JSON text (untyped in the schema).
JSON_META = {b"singer.json": b"true"}
#: Column a Singer target reads as a soft delete.
DELETED_AT = "_sdc_deleted_at"

_SCALARS = {"integer", "number", "boolean", "string"}


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
    _OPTS = _orjson.OPT_NAIVE_UTC | _orjson.OPT_UTC_Z

    def _raw_number(text: str) -> Any:
        return _orjson.Fragment(text)

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (datetimes as RFC 3339 UTC, decimals as exact numbers)."""
        return _orjson.dumps(obj, default=_default, option=_OPTS)

    loads: Callable[[bytes | str], Any] = _orjson.loads
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


# --- JSON Schema → Arrow ----------------------------------------------------------------------


def _types_of(prop: Mapping[str, Any]) -> tuple[list[Any], bool]:
    """The non-null branches of a property and whether it admits null."""
    nullable = False
    branches: list[Any] = []
    t = prop.get("type")
    if isinstance(t, list):
        for x in t:
            if x == "null":
                nullable = True
            else:
                branches.append({**prop, "type": x})
    elif t == "null":
        nullable = True
    elif t is not None:
        branches.append(prop)
    for key in ("anyOf", "oneOf"):
        for sub in prop.get(key) or ():
            if not isinstance(sub, dict):
                if sub == "null":
                    nullable = True
                continue
            sub_branches, sub_null = _types_of(sub)
            nullable = nullable or sub_null
            branches.extend(sub_branches)
    all_of = prop.get("allOf")
    if all_of and not branches:
        merged: dict[str, Any] = {}
        for sub in all_of:
            if isinstance(sub, dict):
                merged.update(sub)
        return _types_of(merged)
    if t is None and not prop.get("anyOf") and not prop.get("oneOf") and "properties" in prop:
        branches.append({**prop, "type": "object"})
    return branches, nullable


def _json_field(name: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, pa.string(), nullable=nullable, metadata=JSON_META)


def property_to_field(name: str, prop: Mapping[str, Any] | bool) -> pa.Field:
    """The Arrow field for one JSON Schema property (see the module docstring)."""
    if not isinstance(prop, Mapping):
        return _json_field(name)
    branches, nullable = _types_of(prop)
    kinds = {b.get("type") for b in branches}
    if not branches:
        return _json_field(name)
    if kinds <= {"integer", "number"} and len(kinds) == 2:
        return pa.field(name, pa.float64(), nullable=nullable)
    if len(branches) > 1:
        # Several non-null alternatives: keep them if they agree, else JSON text.
        first = property_to_field(name, branches[0])
        if all(property_to_field(name, b).type == first.type for b in branches[1:]) \
                and not first.metadata:
            return first.with_nullable(nullable)
        return _json_field(name, nullable)
    b = branches[0]
    kind = b.get("type")
    if kind == "integer":
        return pa.field(name, pa.int64(), nullable=nullable)
    if kind == "number":
        return pa.field(name, pa.float64(), nullable=nullable)
    if kind == "boolean":
        return pa.field(name, pa.bool_(), nullable=nullable)
    if kind == "string":
        fmt = b.get("format")
        if fmt == "date-time":
            return pa.field(name, pa.timestamp("us", tz="UTC"), nullable=nullable)
        if fmt == "date":
            return pa.field(name, pa.date32(), nullable=nullable)
        return pa.field(name, pa.string(), nullable=nullable)
    if kind == "object":
        props = b.get("properties")
        if not props:
            return _json_field(name, nullable)
        # Nested fields are always nullable: a null parent leaves its children null.
        children = [property_to_field(k, v).with_nullable(True) for k, v in props.items()]
        return pa.field(name, pa.struct(children), nullable=nullable)
    if kind == "array":
        items = b.get("items")
        if not isinstance(items, Mapping) or not items:
            return _json_field(name, nullable)
        item = property_to_field("item", items).with_nullable(True)
        return pa.field(name, pa.list_(item), nullable=nullable)
    return _json_field(name, nullable)


def json_schema_to_arrow(schema: Mapping[str, Any]) -> pa.Schema:
    """Arrow schema of a Singer stream's JSON Schema (``type: object`` with properties)."""
    props = schema.get("properties") or {}
    return pa.schema([property_to_field(k, v) for k, v in props.items()])


# --- Arrow → JSON Schema ----------------------------------------------------------------------


def arrow_type_to_json_schema(t: pa.DataType) -> dict[str, Any]:
    """JSON Schema (without nullability) for an Arrow type."""
    if pa.types.is_dictionary(t):
        return arrow_type_to_json_schema(t.value_type)
    if pa.types.is_boolean(t):
        return {"type": "boolean"}
    if pa.types.is_integer(t):
        return {"type": "integer"}
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return {"type": "number"}
    if pa.types.is_timestamp(t):
        return {"type": "string", "format": "date-time"}
    if pa.types.is_date(t):
        return {"type": "string", "format": "date"}
    if pa.types.is_time(t):
        return {"type": "string", "format": "time"}
    if pa.types.is_duration(t):
        return {"type": "number"}
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return {"type": "string", "contentEncoding": "base64"}
    if pa.types.is_struct(t):
        return {"type": "object",
                "properties": {t.field(i).name: field_to_json_schema(t.field(i))
                               for i in range(t.num_fields)}}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return {"type": "array", "items": field_to_json_schema(t.value_field)}
    if pa.types.is_map(t):
        return {"type": "object", "additionalProperties": field_to_json_schema(t.item_field)}
    if pa.types.is_null(t):
        return {}
    return {"type": "string"}


def field_to_json_schema(field: pa.Field) -> dict[str, Any]:
    """JSON Schema of an Arrow field; nullable fields get ``"null"`` in their type."""
    if pa.types.is_null(field.type):
        return {"type": ["null"]}
    if field.metadata and field.metadata.get(b"singer.json") == b"true":
        return {}
    js = arrow_type_to_json_schema(field.type)
    if field.nullable and "type" in js:
        js = {**js, "type": [js["type"], "null"]}
    return js


def arrow_to_json_schema(schema: pa.Schema, required: Iterable[str] = ()) -> dict[str, Any]:
    """Singer stream JSON Schema (``type: object``) for an Arrow schema. ``required``
    properties (a stream's key properties) are listed as required and never admit null,
    whatever the Arrow field says (databases often report key columns as nullable)."""
    req = [r for r in dict.fromkeys(required) if r in schema.names]
    keep = set(req)
    out: dict[str, Any] = {"type": "object", "properties": {
        f.name: field_to_json_schema(f.with_nullable(False) if f.name in keep else f)
        for f in schema}}
    if req:
        out["required"] = req
    return out


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
        subs = {t.field(i).name: _fixer(t.field(i)) for i in range(t.num_fields)}
        subs = {k: f for k, f in subs.items() if f is not None}
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


# --- catalogs -------------------------------------------------------------------------------


def stream_key_properties(entry: Mapping[str, Any]) -> list[str]:
    """Primary key of a catalog entry (``key_properties`` or ``table-key-properties``)."""
    keys = entry.get("key_properties")
    if keys:
        return list(keys)
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == []:
            keys = (md.get("metadata") or {}).get("table-key-properties")
            if keys:
                return list(keys)
    return []


def stream_replication_key(entry: Mapping[str, Any]) -> str | None:
    """Replication key of a catalog entry, if any."""
    if entry.get("replication_key"):
        return str(entry["replication_key"])
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == []:
            rk = (md.get("metadata") or {}).get("replication-key")
            if rk:
                return str(rk)
    return None


def metadata_rules(overrides: Mapping[str, Any]) -> list[tuple[str, list[str], str, Any]]:
    """Meltano-style metadata overrides as rules ``(stream pattern, breadcrumb, key,
    value)``: ``{"<tap_stream_id or glob>": {"replication-method": "INCREMENTAL",
    "<property>": {"selected": false}, "properties": {"<property>": {...}}}}``. A key
    holding an object names a property (nested objects: sub-properties); any other key is
    a metadata key of the stream (breadcrumb ``[]``) or of that property."""
    rules: list[tuple[str, list[str], str, Any]] = []

    def walk(pattern: str, crumb: list[str], node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            if key == "properties" and isinstance(value, Mapping):
                walk(pattern, crumb, {k: v for k, v in value.items()
                                      if isinstance(v, Mapping)})
            elif isinstance(value, Mapping):
                walk(pattern, [*crumb, "properties", str(key)], value)
            else:
                rules.append((pattern, crumb, str(key), value))

    for pattern, node in overrides.items():
        if isinstance(node, Mapping):
            walk(str(pattern), [], node)
    return rules


def apply_metadata(catalog: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``catalog`` with Meltano-style metadata overrides applied (see
    :func:`metadata_rules`), in order, as Meltano's ``metadata`` extra does: streams match
    by ``tap_stream_id`` (``fnmatch`` patterns, ``*`` for all); a stream-level key is also
    set on the entry itself with dashes as underscores (``replication_method``), which
    legacy taps read; a missing metadata entry is created. Lets legacy taps (e.g.
    pipelinewise-tap-mysql, which needs ``selected`` and ``replication-method``) run from
    a discovered catalog."""
    import copy
    from fnmatch import fnmatchcase

    rules = metadata_rules(overrides)
    out = copy.deepcopy(dict(catalog))
    for entry in out.get("streams") or ():
        sid = str(entry.get("tap_stream_id") or entry.get("stream") or "")
        mine = [r for r in rules if fnmatchcase(sid, r[0])]
        if not mine:
            continue
        metadata = entry.setdefault("metadata", [])
        for _, crumb, key, value in mine:
            md = next((m for m in metadata if m.get("breadcrumb") == crumb), None)
            if md is None:
                md = {"breadcrumb": crumb, "metadata": {}}
                metadata.append(md)
            md.setdefault("metadata", {})[key] = value
            if not crumb:
                entry[key.replace("-", "_")] = value
                if key in ("table-key-properties", "view-key-properties"):
                    entry["key_properties"] = list(value or ())
    return out


def stream_selected(entry: Mapping[str, Any]) -> bool | None:
    """The stream-level ``selected`` of a catalog entry (metadata first), or None."""
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == [] and "selected" in (md.get("metadata") or {}):
            return bool(md["metadata"]["selected"])
    return bool(entry["selected"]) if "selected" in entry else None


def deselected_properties(entry: Mapping[str, Any]) -> set[str]:
    """Top-level properties the catalog leaves out (``selected: false`` or ``inclusion:
    unsupported``, never ``automatic`` ones)."""
    out = set()
    for md in entry.get("metadata") or ():
        crumb = md.get("breadcrumb") or []
        m = md.get("metadata") or {}
        if len(crumb) == 2 and crumb[0] == "properties" and m.get("inclusion") != "automatic" \
                and (m.get("selected") is False or m.get("inclusion") == "unsupported"):
            out.add(crumb[1])
    return out


def stream_replication_method(entry: Mapping[str, Any]) -> str | None:
    """Replication method of a catalog entry (``replication_method``, else the metadata's
    ``replication-method`` or ``forced-replication-method``), or None."""
    top: Mapping[str, Any] = {}
    for md in entry.get("metadata") or ():
        if md.get("breadcrumb") == []:
            top = md.get("metadata") or {}
    method = (entry.get("replication_method") or top.get("replication-method")
              or top.get("forced-replication-method"))
    return str(method).upper() if method else None


def select_streams(catalog: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A copy of ``catalog`` with exactly the streams ``names`` (``tap_stream_id`` or
    ``stream``) selected at stream level; field selection is left to the tap's defaults."""
    wanted = set(names)
    streams = []
    for entry in catalog.get("streams") or ():
        entry = dict(entry)
        selected = entry.get("tap_stream_id") in wanted or entry.get("stream") in wanted
        metadata = [dict(m) for m in entry.get("metadata") or ()]
        top = next((m for m in metadata if m.get("breadcrumb") == []), None)
        if top is None:
            top = {"breadcrumb": [], "metadata": {}}
            metadata.insert(0, top)
        top["metadata"] = {**(top.get("metadata") or {}), "selected": selected}
        entry["metadata"] = metadata
        if selected:
            entry["selected"] = True
        else:
            entry.pop("selected", None)
        streams.append(entry)
    return {**catalog, "streams": streams}


# --- running connectors -------------------------------------------------------------------


def resolve_command(command: str | Sequence[str]) -> list[str]:
    """argv of a Singer executable: a path or name on PATH (a string holding spaces that is
    not an existing file is split like a shell would), or an argv list."""
    import os
    import shlex
    import shutil

    if isinstance(command, str):
        if os.path.exists(command) or shutil.which(command):
            return [command]
        return shlex.split(command)
    return [str(c) for c in command]


def connector_name(argv: Sequence[str]) -> str:
    """A short name for messages: the executable's base name (``tap-github``), or the
    module of ``python -m module``."""
    import os

    if len(argv) >= 3 and argv[1] == "-m":
        return argv[2]
    base = os.path.basename(argv[0]) if argv else "singer"
    if base.startswith("python") and len(argv) >= 2:
        return os.path.basename(argv[1])
    return base


def write_private_json(path: Any, obj: Any) -> str:
    """Write ``obj`` as JSON to ``path`` readable by the owner only; returns the path."""
    import os

    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(dumps(obj))
    return str(path)


def tail(path: Any, limit: int = 3000) -> str:
    """The last ``limit`` characters of a log file (secrets redacted)."""
    from conn.secrets import redact

    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit * 4))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return redact(text[-limit:].strip())


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

"""Singer stream schemas ⇄ Arrow schemas: the JSON Schema of a SCHEMA message or catalog
entry as an Arrow schema (what the ``singer`` source and ``conn singer target`` read into),
and an Arrow schema as a stream's JSON Schema (what the ``singer`` destination and
``conn singer tap`` announce).

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

Only pyarrow and the standard library are imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

#: Field metadata marking a string column that holds JSON text (untyped in the schema).
JSON_META = {b"singer.json": b"true"}


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

"""Parsing ``syncs.NAME.mapping`` into field specs (no data is touched here).

Forms accepted (``schemas/mapping.schema.json``)::

    mapping: "*"                      # same-named columns the destination object declares
    mapping:
      email: user_email               # shorthand: destination field <- source column
      "*": "*"                        # plus every same-named column (passthrough)
      name: {template: "{first} {last}"}
      phone: {from: tel, transforms: [trim, {replace: {pattern: "-", replacement: ""}}]}
      plan: {from: tier, value_map: {g: gold, s: silver}, default: basic}
      signup: {from: created_at, format: "%Y-%m-%d"}
      score: {from: ltv, cast: integer, null: skip}
      email_sha256: {from: user_email, hash: email}
      source: {value: warehouse}

A missing mapping means ``"*"``. Fields not listed are dropped.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass
from typing import Any

from conn.errors import ConfigError

PASSTHROUGH = "*"
NULL_MODES = ("send", "skip")
CASTS = ("string", "integer", "number", "boolean", "date", "datetime")


@dataclass
class FieldSpec:
    """One destination field and how to compute it from a batch."""

    field: str
    path: str
    source: str | None = None
    value: Any = None
    has_value: bool = False
    template: str | None = None
    concat: list[str] | None = None
    sep: str = ""
    # dataclasses.field by its module: this class has a field named ``field``.
    transforms: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    value_map: dict[Any, Any] | None = None
    default: Any = None
    has_default: bool = False
    parse: str | None = None
    format: str | None = None
    cast: str | None = None
    hash: dict[str, Any] | None = None
    null: str = "send"

    @property
    def columns(self) -> list[str]:
        """Source columns this field reads."""
        if self.source is not None:
            return [self.source]
        if self.template is not None:
            return template_columns(self.template)
        return list(self.concat or [])

    @property
    def is_direct(self) -> bool:
        """True when the field is one column, possibly transformed (not combined)."""
        return self.source is not None


def template_columns(template: str) -> list[str]:
    """Column names referenced as ``{name}`` in a template string."""
    out = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in out:
            out.append(name)
    return out


def _transform(item: Any, path: str, errs: list[ConfigError], file: str | None
               ) -> tuple[str, dict[str, Any]] | None:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and len(item) == 1:
        (name, opts), = item.items()
        if opts is None:
            opts = {}
        if isinstance(opts, dict):
            return str(name), dict(opts)
    errs.append(ConfigError("a transform is a name or {name: {option: value}}",
                            file=file, path=path))
    return None


def parse_mapping(mapping: Any, *, sync: str, stream_columns: list[str],
                  object_fields: list[str] | None, null_default: str = "send",
                  file: str | None = None) -> tuple[list[FieldSpec], list[ConfigError]]:
    """Field specs of a sync's mapping, and the problems found in its shape.

    ``object_fields`` lists the destination object's declared fields (None when the object
    accepts any field): passthrough maps only those; unknown-field checks are done by the
    mapper."""
    base = f"syncs.{sync}.mapping"
    errs: list[ConfigError] = []
    specs: list[FieldSpec] = []
    if mapping in (None, {}, PASSTHROUGH):
        mapping = {PASSTHROUGH: PASSTHROUGH}
    if not isinstance(mapping, dict):
        return [], [ConfigError('expected a mapping of fields or "*"', file=file, path=base)]
    explicit = {k for k in mapping if k != PASSTHROUGH}
    for name, raw in mapping.items():
        path = f"{base}.{name}"
        if name == PASSTHROUGH:
            if raw != PASSTHROUGH:
                errs.append(ConfigError('"*" only takes "*" (pass same-named columns)',
                                        file=file, path=path))
                continue
            for col in stream_columns:
                if col in explicit or (object_fields is not None and col not in object_fields):
                    continue
                specs.append(FieldSpec(col, f"{base}.*", source=col, null=null_default))
            continue
        if isinstance(raw, str):
            specs.append(FieldSpec(name, path, source=raw, null=null_default))
            continue
        if not isinstance(raw, dict):
            errs.append(ConfigError("expected a column name or a field spec",
                                    file=file, path=path))
            continue
        spec = FieldSpec(name, path, null=raw.get("null", null_default))
        kinds = [k for k in ("from", "template", "concat", "value") if k in raw]
        if len(kinds) != 1:
            errs.append(ConfigError("a field spec needs exactly one of 'from', 'template', "
                                    f"'concat', 'value' (got {', '.join(kinds) or 'none'})",
                                    file=file, path=path))
            continue
        spec.source = raw.get("from")
        spec.template = raw.get("template")
        if "concat" in raw:
            spec.concat = [str(c) for c in raw["concat"]]
            spec.sep = str(raw.get("sep", ""))
        if "value" in raw:
            spec.value, spec.has_value = raw["value"], True
        for i, t in enumerate(raw.get("transforms") or []):
            parsed = _transform(t, f"{path}.transforms[{i}]", errs, file)
            if parsed:
                spec.transforms.append(parsed)
        spec.value_map = raw.get("value_map")
        if "default" in raw:
            spec.default, spec.has_default = raw["default"], True
        spec.parse = raw.get("parse")
        spec.format = raw.get("format")
        spec.cast = raw.get("cast")
        if spec.cast is not None and spec.cast not in CASTS:
            errs.append(ConfigError(f"unknown cast {spec.cast!r} (expected one of "
                                    f"{', '.join(CASTS)})", file=file, path=f"{path}.cast"))
        h = raw.get("hash")
        if h is True:
            spec.hash = {"normalize": "text"}
        elif isinstance(h, str):
            spec.hash = {"normalize": h}
        elif isinstance(h, dict):
            spec.hash = {"normalize": "text", **h}
        if spec.null not in NULL_MODES:
            errs.append(ConfigError(f"'null' must be send or skip, got {spec.null!r}",
                                    file=file, path=f"{path}.null"))
        specs.append(spec)
    return specs, errs

"""JSON Schema validation with messages that name the path and what was expected."""

from __future__ import annotations

from typing import Any

from conn.errors import ConfigError
from conn.secrets import redact


def _path(base: str, parts: Any) -> str:
    out = base
    for p in parts:
        out = f"{out}[{p}]" if isinstance(p, int) else (f"{out}.{p}" if out else str(p))
    return out


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "null"}


def _type_of(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "mapping"
    return "null" if v is None else type(v).__name__


def describe(error: Any) -> str:
    """A user-facing sentence for one jsonschema error; never echoes a secret."""
    v, val, inst = error.validator, error.validator_value, error.instance
    if v == "type":
        types: list[str] = val if isinstance(val, list) else [val]
        want = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return f"expected {want}, got {_type_of(inst)}"
    if v == "required":
        missing = [k for k in val if isinstance(inst, dict) and k not in inst]
        return "missing required key " + ", ".join(repr(k) for k in missing)
    if v == "additionalProperties":
        extra = sorted(set(inst) - set(error.schema.get("properties", {})), key=str)
        known = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        return f"unknown key(s) {', '.join(map(repr, extra))} (expected one of: {known})"
    if v == "enum":
        return f"expected one of {', '.join(map(repr, val))}, got {redact(repr(inst))}"
    if v == "const":
        return f"expected {val!r}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"expected {v} {val}, got {redact(repr(inst))}"
    if v in ("minLength", "maxLength", "minItems", "maxItems", "minProperties"):
        return f"expected {v} {val}"
    if v == "pattern":
        return f"expected a value matching {val!r}"
    if v == "format":
        return f"expected a valid {val}"
    if v in ("oneOf", "anyOf"):
        titles = [s.get("title") or s.get("description") or "" for s in val if isinstance(s, dict)]
        titles = [t for t in titles if t]
        if titles:
            return "expected one of: " + "; ".join(titles)
    return redact(error.message)


# Compiled validators by (id(schema), id(registry)); the entry keeps both objects alive,
# so an id cannot be reused by another schema while its entry exists.
_VALIDATORS: dict[tuple[int, int], tuple[Any, Any, Any]] = {}


def _validator(schema: dict[str, Any], registry: Any) -> Any:
    """A validator for ``schema``, built once per schema object (conn's and plugins'
    schemas are module-level constants)."""
    key = (id(schema), id(registry))
    hit = _VALIDATORS.get(key)
    if hit is not None and hit[0] is schema and hit[1] is registry:
        return hit[2]
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    kwargs = {"registry": registry} if registry is not None else {}
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER, **kwargs)
    if len(_VALIDATORS) >= 256:  # schemas built on the fly (tests): stay bounded
        _VALIDATORS.clear()
    _VALIDATORS[key] = (schema, registry, validator)
    return validator


def _text_keys(node: Any) -> Any:
    """``node`` with every mapping key as text (``None`` as ``null``), for validation."""
    if isinstance(node, dict):
        return {("null" if k is None else k if isinstance(k, str) else str(k)):
                _text_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_text_keys(v) for v in node]
    return node


def _path_order(error: Any) -> list[tuple[int, Any]]:
    """Sort key of an error's path: list positions in order, then keys as text (YAML
    keys may be numbers, booleans or null next to strings)."""
    return [(0, p) if isinstance(p, int) else (1, str(p)) for p in error.absolute_path]


def schema_errors(instance: Any, schema: dict[str, Any], *, file: str | None, path: str,
                  registry: Any = None) -> list[ConfigError]:
    """Validate and return one :class:`ConfigError` per problem (deepest first)."""
    import jsonschema

    validator = _validator(schema, registry)
    errors = []
    # JSON Schema knows only text keys (patternProperties and propertyNames run regular
    # expressions on them); YAML also has numbers, booleans and null.
    for err in sorted(validator.iter_errors(_text_keys(instance)), key=_path_order):
        # For oneOf/anyOf, the most specific sub-error explains best.
        best = jsonschema.exceptions.best_match([err]) if err.context else err
        errors.append(ConfigError(describe(best), file=file,
                                  path=_path(path, best.absolute_path) or "(top level)"))
    return errors

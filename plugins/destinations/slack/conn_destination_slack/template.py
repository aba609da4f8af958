"""Message templates: ``{field}`` substitution over a message's fields, nothing more.

A template is text in which ``{name}`` stands for the value of the field ``name`` and
``{{`` / ``}}`` for literal braces. There are no format specs, attribute or index
look-ups and no expressions (unlike ``str.format``), so a template cannot reach anything
but the fields it names. Substituted values are escaped as Slack's formatting rules ask
(``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;``, ``&gt;``,
https://docs.slack.dev/messaging/formatting-message-text#escaping): a value can never
become a link, a ``<!channel>`` mention or a user mention. The template's own text is not
escaped, so its author may write ``<!here>`` or ``<https://example.com|a link>``.

Block Kit (``blocks``) is a JSON template: every string in it is rendered the same way.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    """A template that cannot be parsed (message says where)."""


class MissingField(KeyError):
    """A template names a field the message does not have."""


def escape(text: str) -> str:
    """Slack's three control characters escaped (``&`` first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def as_text(value: Any) -> str:
    """A field value as message text: null is empty, booleans ``true``/``false``, dates
    ISO 8601, lists and objects JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def parse(template: str) -> list[str | tuple[str]]:
    """The template as literal strings and ``(field,)`` tuples; raises
    :class:`TemplateError` for a lone brace or an empty ``{}``."""
    parts: list[str | tuple[str]] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            parts.append(template[pos:m.start()])
        tok = m.group(0)
        if tok in ("{{", "}}"):
            parts.append(tok[0])
        elif m.group(1) is not None and m.group(1).strip():
            parts.append((m.group(1).strip(),))
        else:
            raise TemplateError(f"{tok!r} at character {m.start()} of the template: write "
                                "{field} for a field, {{ or }} for a literal brace")
        pos = m.end()
    if pos < len(template):
        parts.append(template[pos:])
    return parts


def fields(template: str) -> list[str]:
    """The field names a template uses, in order."""
    return [p[0] for p in parse(template) if isinstance(p, tuple)]


def render(template: str, values: Mapping[str, Any]) -> str:
    """The template with each ``{field}`` replaced by its escaped value; raises
    :class:`MissingField` for a field ``values`` lacks (a null value renders empty)."""
    out = []
    for part in parse(template):
        if isinstance(part, str):
            out.append(part)
        elif part[0] in values:
            out.append(escape(as_text(values[part[0]])))
        else:
            raise MissingField(part[0])
    return "".join(out)


def render_json(node: Any, values: Mapping[str, Any]) -> Any:
    """Every string of a JSON value (a Block Kit ``blocks`` list) rendered."""
    if isinstance(node, str):
        return render(node, values)
    if isinstance(node, list):
        return [render_json(x, values) for x in node]
    if isinstance(node, dict):
        return {k: render_json(v, values) for k, v in node.items()}
    return node


def check_json(node: Any) -> None:
    """Parse every string of a JSON template (raises :class:`TemplateError`)."""
    if isinstance(node, str):
        parse(node)
    elif isinstance(node, list):
        for x in node:
            check_json(x)
    elif isinstance(node, dict):
        for v in node.values():
            check_json(v)

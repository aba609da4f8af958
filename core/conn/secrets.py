"""Secret values resolved from ``${ENV}`` references, and their redaction everywhere.

Every value that came from an environment reference, or that sits under a config key the
plugin's schema marks secret, is registered here; :func:`redact` replaces each with
``***`` in any text conn prints, logs, stores or reports.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

#: Config keys treated as secret even when a schema forgets to say so.
SECRET_KEY_HINTS = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|private[_-]?key|credential|auth)", re.I
)


def register(*values: Any) -> None:
    """Remember values that must never be shown (empty and very short values are ignored,
    since masking every ``a`` in a log would hide everything and protect nothing)."""
    global _pattern
    with _lock:
        for v in values:
            if isinstance(v, str) and len(v) >= 4:
                _secrets.add(v)
        _pattern = None


def clear() -> None:
    """Forget every registered secret (tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: Any) -> str:
    """Return ``text`` as a string with every registered secret replaced by ``***``."""
    global _pattern
    s = text if isinstance(text, str) else str(text)
    if not _secrets:
        return s
    pat = _pattern
    if pat is None:
        with _lock:
            ordered = sorted(_secrets, key=len, reverse=True)
            pat = _pattern = re.compile("|".join(re.escape(x) for x in ordered))
    return pat.sub(MASK, s)


def redact_obj(obj: Any) -> Any:
    """Deep-copy a JSON-like object with secrets masked in every string."""
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    if isinstance(obj, str):
        return redact(obj)
    return obj


def secret_paths(schema: dict, prefix: tuple[str, ...] = ()) -> Iterable[tuple[str, ...]]:
    """Yield the paths of properties a JSON Schema marks secret (``"secret": true``,
    ``"writeOnly": true`` or ``"format": "password"``)."""
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        path = (*prefix, key)
        if sub.get("secret") or sub.get("writeOnly") or sub.get("format") == "password":
            yield path
        if sub.get("type") == "object" or "properties" in sub:
            yield from secret_paths(sub, path)


def register_config_secrets(config: dict, schema: dict | None) -> None:
    """Register the values of every secret field of a plugin config."""
    paths = list(secret_paths(schema or {}))
    for path in paths:
        node: Any = config
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            register(str(node))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and SECRET_KEY_HINTS.search(k):
                    register(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)


class RedactingFilter(logging.Filter):
    """Logging filter that masks secrets in every record passing through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = ()
        return True


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to the root logger's handlers (idempotent)."""
    root = logging.getLogger()
    for h in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())

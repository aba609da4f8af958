"""Secret values resolved from ``${ENV}`` references, and their redaction everywhere.

Every value that came from an environment reference, or that sits under a config key the
plugin's schema marks secret, is registered here; :func:`redact` replaces each with
``***`` in any text conn prints, logs, stores or reports.

Credentials inside URLs (``postgresql://user:p@ss/w:rd@host/db``) get two nets, because a
password written into a URL unescaped is cut into pieces by whatever parses it (a
``/`` ends the authority, a ``:`` starts a port), and an error message may quote any
piece ("Port could not be cast to integer value as 'rd'"):

* :func:`register_url_credentials` registers the password of every URL-like config
  value, its percent-decoded form and each of its pieces between URL delimiters;
* :func:`redact` masks the user information of any URL in the text (``scheme://***@``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

#: Config keys treated as secret even when a schema forgets to say so.
SECRET_KEY_HINTS = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|private[_-]?key|credential|auth)", re.I
)


#: A URL's scheme and user information: everything up to the last ``@`` of a run of
#: characters without blanks or quotes (a password may hold ``@``, ``:`` and ``/``).
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^\s\"'<>`]*@")
_URL_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_URL_DELIMITERS = re.compile(r"[:/@?#\[\]]")
#: A user name alone is not a secret, except a long one: a token passed as the user name
#: (``https://TOKEN@host``).
TOKEN_AS_USER = 20


def register(*values: Any) -> None:
    """Remember values that must never be shown (empty and very short values are ignored,
    since masking every ``a`` in a log would hide everything and protect nothing)."""
    global _pattern
    with _lock:
        for v in values:
            if isinstance(v, str) and len(v) >= 4:
                _secrets.add(v)
        _pattern = None


def url_credentials(value: str) -> list[str]:
    """The secret parts of a URL's user information: the password (after the first
    ``:``), its percent-decoded form and each of their pieces between URL delimiters;
    for a user name alone, the name if it is long enough to be a token."""
    if not _URL_START.match(value) or "@" not in value:
        return []
    userinfo = value[value.index("://") + 3:value.rindex("@")]
    if ":" not in userinfo:
        return [userinfo, unquote(userinfo)] if len(userinfo) >= TOKEN_AS_USER else []
    password = userinfo.split(":", 1)[1]
    out = [userinfo, password, unquote(password)]
    for form in (password, unquote(password)):
        out += _URL_DELIMITERS.split(form)
    return out


def register_url_credentials(node: Any) -> None:
    """Register the credentials of every URL-like string in a config (any depth)."""
    if isinstance(node, dict):
        for v in node.values():
            register_url_credentials(v)
    elif isinstance(node, list | tuple):
        for v in node:
            register_url_credentials(v)
    elif isinstance(node, str) and "://" in node:
        register(*url_credentials(node))


def clear() -> None:
    """Forget every registered secret (tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: Any) -> str:
    """Return ``text`` as a string with every registered secret replaced by ``***``, and
    the user information of every URL in it masked (``postgresql://***@host/db``)."""
    global _pattern
    s = text if isinstance(text, str) else str(text)
    if _secrets:
        pat = _pattern
        if pat is None:
            with _lock:
                ordered = sorted(_secrets, key=len, reverse=True)
                pat = _pattern = re.compile("|".join(re.escape(x) for x in ordered))
        s = pat.sub(MASK, s)
    if "://" in s and "@" in s:
        s = _URL_USERINFO.sub(rf"\1{MASK}@", s)
    return s


def redact_obj(obj: Any) -> Any:
    """Deep-copy a JSON-like object with secrets masked in every string, keys included
    (a report counts rejections by the vendor's message, which may quote a secret)."""
    if isinstance(obj, dict):
        return {redact(k) if isinstance(k, str) else k: redact_obj(v) for k, v in obj.items()}
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
    """Register the values of every secret field of a plugin config, of every key whose
    name says secret, and the credentials of every URL in it."""
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
                if isinstance(v, str) and SECRET_KEY_HINTS.search(str(k)):
                    register(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    register_url_credentials(config)


class RedactingFilter(logging.Filter):
    """Logging filter that masks secrets in every record passing through a handler: the
    message, and the traceback and stack a record carries (an exception's message may
    quote a secret)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_info:
            record.exc_text = redact(_formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_formatter = logging.Formatter()


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to the root logger's handlers (idempotent)."""
    root = logging.getLogger()
    for h in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())

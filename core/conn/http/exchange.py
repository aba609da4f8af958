"""Excerpts of the HTTP exchange behind a rejected row, shown by ``conn rejected`` and the
UI's run page next to the vendor's reason.

:class:`~conn.http.HttpClient` notes the last exchange each thread had (method, URL,
status and the response) without copying anything: a note costs nothing when no row is
rejected. The batching helpers (:mod:`conn.http.batching`) turn the note into an
excerpt when they reject a row, so every destination writing through them gets excerpts
without code of its own; a plugin that builds its rejections itself calls
:func:`excerpt` right after the request, as in ``Rejection(i, reason,
excerpt=exchange.excerpt(record))``.

An excerpt is a small JSON object: ``method``, ``path`` (the URL's path only: no host,
no user information, no query string), ``status``, ``request`` (that row's part of the
request body, as JSON) and ``response`` (the start of the response body), each text cut
to :data:`LIMIT` characters and passed through :func:`conn.secrets.redact`. Headers
(where credentials travel) are never part of it.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conn import secrets

#: The most characters kept of the request part and of the response body.
LIMIT = 2048

_local = threading.local()


@dataclass(frozen=True)
class Exchange:
    """The last request a thread sent and the response it got (read only when a row
    is rejected)."""

    method: str
    url: str
    status: int
    response: Any  #: an ``httpx.Response`` (or anything with ``.text``)


def note(method: str, url: Any, status: int, response: Any) -> None:
    """Remember this thread's latest exchange (called by the HTTP client)."""
    _local.last = Exchange(method, str(url), int(status), response)


def clear() -> None:
    """Forget this thread's exchange (before a call whose rejections it must explain)."""
    _local.last = None


def last() -> Exchange | None:
    """This thread's latest exchange, if any since :func:`clear`."""
    return getattr(_local, "last", None)


def cut(text: str, limit: int = LIMIT) -> str:
    """``text`` with secrets masked, cut to ``limit`` characters (``…`` marks a cut)."""
    text = secrets.redact(text)
    return text if len(text) <= limit else text[:limit] + "…"


def url_path(url: str) -> str:
    """The path of ``url``, secrets masked: no scheme, host, user information, query
    string or fragment (a secret URL registered whole is masked before it is cut)."""
    parts = urllib.parse.urlsplit(url)
    bare = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    masked = secrets.redact(urllib.parse.unquote(bare))
    return (urllib.parse.urlsplit(masked).path or "/") if "://" in masked else masked


def record_json(record: Any) -> str:
    """A record as compact JSON (values JSON cannot hold as text); a plugin's
    ``(position, record)`` or ``(record, key)`` pair counts as its record."""
    if isinstance(record, tuple) and len(record) == 2:
        if isinstance(record[0], int):
            record = record[1]
        elif isinstance(record[0], Mapping):
            record = record[0]
    try:
        return json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(record)


def excerpt(record: Any = None, exchange: Exchange | None = None) -> dict[str, Any] | None:
    """The excerpt of ``exchange`` (default: this thread's last) for one row whose part
    of the request body is ``record``; None when the thread sent no request."""
    ex = exchange if exchange is not None else last()
    if ex is None:
        return None
    try:
        body = str(ex.response.text)
    except Exception:  # an undecodable or unread body
        body = ""
    return {"method": ex.method, "path": url_path(ex.url), "status": ex.status,
            "request": cut(record_json(record)) if record is not None else "",
            "response": cut(body)}


def stored(ex: Mapping[str, Any]) -> str:
    """An excerpt as the state keeps it: JSON text, every text cut to :data:`LIMIT`
    and masked again (a plugin may build its own)."""
    def again(v: Any) -> Any:
        if not isinstance(v, str):
            return v
        done = len(v) == LIMIT + 1 and v.endswith("…")  # cut by :func:`excerpt`
        return secrets.redact(v) if done else cut(v)

    return json.dumps({str(k): again(v) for k, v in ex.items()}, default=str,
                      ensure_ascii=False)

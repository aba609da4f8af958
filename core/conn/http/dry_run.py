"""Describe HTTP requests for ``--dry-run``, with secrets redacted.

A destination implements :meth:`conn.destination.Destination.describe_requests` by
building the requests it would send and passing them to :func:`describe_request` (or
:meth:`conn.http.HttpClient.describe`): method, URL path (query secrets masked), headers
(credentials masked) and the JSON body, every registered secret replaced by ``***``.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Mapping
from typing import Any

import httpx

from conn import secrets

#: Header names whose values are always masked.
SENSITIVE_HEADERS = re.compile(
    r"(authorization|cookie|signature|api[-_]?key|token|secret|password|credential)", re.I
)


def _header_value(name: str, value: str) -> str:
    if SENSITIVE_HEADERS.search(name):
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in ("bearer", "basic", "token"):
            return f"{scheme} {secrets.MASK}"
        return secrets.MASK
    return secrets.redact(value)


def describe(method: str, url: str, *, json: Any = None, content: bytes | None = None,
             headers: Mapping[str, str] | None = None, base_url: str = "") -> dict[str, Any]:
    """Describe one request from its parts (see :func:`describe_request`)."""
    from conn.http.client import safe_url

    full = httpx.URL(base_url).join(url) if base_url else httpx.URL(url)
    out: dict[str, Any] = {"method": method.upper(), "url": safe_url(full),
                           "path": secrets.redact(full.raw_path.decode("ascii", "replace"))}
    if headers:
        out["headers"] = {k: _header_value(k, v) for k, v in headers.items()}
    if json is not None:
        out["json"] = secrets.redact_obj(json)
    elif content:
        try:
            out["json"] = secrets.redact_obj(jsonlib.loads(content))
        except ValueError:
            out["body"] = secrets.redact(content.decode("utf-8", "replace"))
    if "path" in out and "?" in out["path"]:  # the query lives in "url", masked
        out["path"] = out["path"].split("?", 1)[0]
    return out


def describe_request(request: httpx.Request, *,
                     extra_headers: Mapping[str, str] | None = None,
                     skip_headers: tuple[str, ...] = ("host", "accept-encoding", "connection",
                                                      "user-agent", "content-length")
                     ) -> dict[str, Any]:
    """Describe an :class:`httpx.Request`: ``{"method", "url", "path", "headers", "json"}``.

    ``extra_headers`` adds headers an auth would set (already masked, e.g. from
    ``auth.describe_headers()``), since the auth flow does not run in a dry run.
    """
    headers = {k: v for k, v in request.headers.items() if k.lower() not in skip_headers}
    headers.update(extra_headers or {})
    return describe(request.method, str(request.url), content=request.content or None,
                    headers=headers)

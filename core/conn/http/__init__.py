"""HTTP toolkit for destinations: a rate-limited retrying client, auth helpers, batch
splitting on rejection, dry-run request descriptions, a lighter transport for many small
requests to one origin (:mod:`conn.http.transport`) and the shared HTTP settings
(:mod:`conn.http.config`).

Import from here: ``from conn.http import HttpClient, BearerToken, write_with_split``.
Names are loaded on first access, so ``import conn.http.config`` (schema fragments used
in a destination's class body) and ``LazyClient`` (a base class) do not import httpx; the
client, auth, batching and dry-run names do. Destination plugins should import those where
the destination class lives, not in their entry-point module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conn.http.auth import BasicAuth, BearerToken, OAuth2ClientCredentials, OAuth2RefreshToken
    from conn.http.batching import (
        BatchRejected,
        Outcome,
        chunked,
        write_each,
        write_in_chunks,
        write_with_split,
    )
    from conn.http.client import (
        NO_RETRY,
        HttpClient,
        HttpStatusError,
        RateLimiter,
        RetryPolicy,
        StillFailing,
        body_excerpt,
        parse_retry_after,
        safe_url,
    )
    from conn.http.dry_run import describe, describe_request
    from conn.http.exchange import excerpt
    from conn.http.lazy import LazyClient
    from conn.http.transport import KeepAliveTransport, direct_transport

#: Public name -> the submodule defining it.
_EXPORTS = {
    "BasicAuth": "auth",
    "BearerToken": "auth",
    "OAuth2ClientCredentials": "auth",
    "OAuth2RefreshToken": "auth",
    "BatchRejected": "batching",
    "Outcome": "batching",
    "chunked": "batching",
    "write_each": "batching",
    "write_in_chunks": "batching",
    "write_with_split": "batching",
    "HttpClient": "client",
    "KeepAliveTransport": "transport",
    "direct_transport": "transport",
    "HttpStatusError": "client",
    "RateLimiter": "client",
    "RetryPolicy": "client",
    "NO_RETRY": "client",
    "StillFailing": "client",
    "body_excerpt": "client",
    "parse_retry_after": "client",
    "safe_url": "client",
    "describe": "dry_run",
    "describe_request": "dry_run",
    "excerpt": "exchange",
    "LazyClient": "lazy",
}

__all__ = [
    "NO_RETRY",
    "BasicAuth",
    "BatchRejected",
    "BearerToken",
    "HttpClient",
    "HttpStatusError",
    "KeepAliveTransport",
    "LazyClient",
    "OAuth2ClientCredentials",
    "OAuth2RefreshToken",
    "Outcome",
    "RateLimiter",
    "RetryPolicy",
    "StillFailing",
    "body_excerpt",
    "chunked",
    "describe",
    "describe_request",
    "direct_transport",
    "excerpt",
    "parse_retry_after",
    "safe_url",
    "write_each",
    "write_in_chunks",
    "write_with_split",
]


def __getattr__(name: str) -> Any:
    """Import the submodule defining ``name`` on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

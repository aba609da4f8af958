"""HTTP toolkit for destinations: a rate-limited retrying client, auth helpers, batch
splitting on rejection, and dry-run request descriptions.

Import from here: ``from conn.http import HttpClient, BearerToken, write_with_split``.
Importing this package imports httpx; destination plugins should import it where the
destination class lives, not in their entry-point module.
"""

from __future__ import annotations

from conn.http.auth import BasicAuth, BearerToken, OAuth2ClientCredentials, OAuth2RefreshToken
from conn.http.batching import (
    BatchRejected,
    Outcome,
    chunked,
    write_in_chunks,
    write_with_split,
)
from conn.http.client import (
    HttpClient,
    HttpStatusError,
    RateLimiter,
    RetryPolicy,
    parse_retry_after,
    safe_url,
)
from conn.http.dry_run import describe, describe_request

__all__ = [
    "BasicAuth",
    "BatchRejected",
    "BearerToken",
    "HttpClient",
    "HttpStatusError",
    "OAuth2ClientCredentials",
    "OAuth2RefreshToken",
    "Outcome",
    "RateLimiter",
    "RetryPolicy",
    "chunked",
    "describe",
    "describe_request",
    "parse_retry_after",
    "safe_url",
    "write_in_chunks",
    "write_with_split",
]

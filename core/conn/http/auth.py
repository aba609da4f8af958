"""Authentication helpers as :class:`httpx.Auth` objects.

Each registers the credentials it handles with :mod:`conn.secrets`, so they are redacted
from every log line, error and report. Pass one as ``auth=`` to
:class:`conn.http.HttpClient`. ``describe_headers()`` tells ``--dry-run`` which headers
the auth adds, with values masked.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import httpx

from conn import secrets
from conn.errors import CheckFailed, RetryLater


class BearerToken(httpx.Auth):
    """``Authorization: Bearer <token>`` (API keys, private-app tokens)."""

    def __init__(self, token: str, header: str = "Authorization", prefix: str = "Bearer") -> None:
        secrets.register(token)
        self._token = token
        self.header, self.prefix = header, prefix

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the header."""
        request.headers[self.header] = f"{self.prefix} {self._token}".strip()
        yield request

    def describe_headers(self) -> dict[str, str]:
        """Headers this auth adds, masked."""
        return {self.header: f"{self.prefix} {secrets.MASK}".strip()}

    def __repr__(self) -> str:
        return f"<BearerToken header={self.header!r}>"


class BasicAuth(httpx.Auth):
    """HTTP Basic auth; the password and the encoded header value are both secret."""

    def __init__(self, username: str, password: str) -> None:
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
        secrets.register(password, encoded)
        self._value = f"Basic {encoded}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the header."""
        request.headers["Authorization"] = self._value
        yield request

    def describe_headers(self) -> dict[str, str]:
        """Headers this auth adds, masked."""
        return {"Authorization": f"Basic {secrets.MASK}"}

    def __repr__(self) -> str:
        return "<BasicAuth>"


class OAuth2RefreshToken(httpx.Auth):
    """OAuth 2 ``refresh_token`` grant against ``token_url``.

    Gets an access token on first use, refreshes it shortly before ``expires_in`` runs
    out, and on a 401 refreshes once and replays the request. Thread-safe: concurrent
    workers share one token and only one of them refreshes. A rotated ``refresh_token``
    in the token response replaces the old one (read it back from :attr:`refresh_token`
    to persist it). Access and refresh tokens are registered as secrets.

    ``client_auth="body"`` sends client id/secret as form fields, ``"basic"`` as HTTP
    Basic. ``on_token(response_json)`` lets a plugin read extras such as Salesforce's
    ``instance_url``.
    """

    def __init__(self, token_url: str, refresh_token: str, client_id: str,
                 client_secret: str | None = None, *, scope: str | None = None,
                 client_auth: str = "body", margin: float = 60.0,
                 http: httpx.Client | None = None, clock: Callable[[], float] = time.monotonic,
                 on_token: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        secrets.register(refresh_token, client_secret)
        self.token_url = token_url
        self.refresh_token = refresh_token
        self.client_id, self._client_secret = client_id, client_secret
        self.scope, self.client_auth, self.margin = scope, client_auth, margin
        self._http = http
        self._clock = clock
        self._on_token = on_token
        self._lock = threading.Lock()
        self._access: str | None = None
        self._expires_at = 0.0
        #: How many times a token was fetched (tests, diagnostics).
        self.refreshes = 0

    def _grant_data(self) -> dict[str, str]:
        """The grant-specific form fields of a token request."""
        return {"grant_type": "refresh_token", "refresh_token": self.refresh_token}

    def _fetch(self) -> None:
        data = self._grant_data()
        if self.scope:
            data["scope"] = self.scope
        auth = None
        if self.client_auth == "basic":
            auth = httpx.BasicAuth(self.client_id, self._client_secret or "")
        else:
            data["client_id"] = self.client_id
            if self._client_secret:
                data["client_secret"] = self._client_secret
        http = self._http or httpx.Client(timeout=30.0)
        try:
            # request(), not post(): httpx types only request()'s auth as accepting
            # None, which means no auth at all (not the client's own).
            resp = http.request("POST", self.token_url, data=data, auth=auth,
                                headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise RetryLater(secrets.redact(
                f"OAuth token refresh at {self.token_url} failed: {type(exc).__name__}"
            )) from None
        finally:
            if self._http is None:
                http.close()
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code >= 500 or resp.status_code == 429:
            raise RetryLater(f"OAuth token refresh at {self.token_url}: HTTP {resp.status_code}")
        if resp.status_code >= 400 or "access_token" not in body:
            reason = secrets.redact(
                f"{body.get('error', '')} {body.get('error_description', '')}".strip()
                or resp.text[:200]
            )
            raise CheckFailed(
                f"OAuth token refresh at {self.token_url} was refused (HTTP "
                f"{resp.status_code}: {reason}); check client id, secret and refresh token, "
                "or authorise the app again to get a new refresh token"
            )
        self._access = str(body["access_token"])
        secrets.register(self._access)
        if body.get("refresh_token"):
            self.refresh_token = str(body["refresh_token"])
            secrets.register(self.refresh_token)
        expires = body.get("expires_in")
        self._expires_at = (self._clock() + float(expires) - self.margin
                            if expires is not None else float("inf"))
        self.refreshes += 1
        if self._on_token is not None:
            self._on_token(body)

    def token(self, *, stale: str | None = None) -> str:
        """The current access token, fetching one if missing, expiring, or equal to
        ``stale`` (a token the server just refused)."""
        with self._lock:
            if (self._access is None or self._clock() >= self._expires_at
                    or (stale is not None and self._access == stale)):
                self._fetch()
            assert self._access is not None
            return self._access

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the current token; on 401 refresh once and replay."""
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = self.token(stale=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def describe_headers(self) -> dict[str, str]:
        """Headers this auth adds, masked."""
        return {"Authorization": f"Bearer {secrets.MASK}"}

    def __repr__(self) -> str:
        return f"<OAuth2RefreshToken {self.token_url!r}>"


class OAuth2ClientCredentials(OAuth2RefreshToken):
    """OAuth 2 ``client_credentials`` grant against ``token_url`` (server-to-server apps,
    e.g. a Salesforce external client app with the client-credentials flow).

    Behaves like :class:`OAuth2RefreshToken` (lazy token, refresh before expiry, one
    refresh and replay on 401, ``on_token`` for extras such as ``instance_url``) but
    asks for a token with the client id and secret alone.
    """

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 scope: str | None = None, client_auth: str = "body", margin: float = 60.0,
                 http: httpx.Client | None = None, clock: Callable[[], float] = time.monotonic,
                 on_token: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        super().__init__(token_url, "", client_id, client_secret, scope=scope,
                         client_auth=client_auth, margin=margin, http=http, clock=clock,
                         on_token=on_token)

    def _grant_data(self) -> dict[str, str]:
        return {"grant_type": "client_credentials"}

    def __repr__(self) -> str:
        return f"<OAuth2ClientCredentials {self.token_url!r}>"

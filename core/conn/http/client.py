"""One HTTP client for every HTTP destination: shared rate limiter, retries, redaction.

:class:`HttpClient` wraps :class:`httpx.Client`. Every request first takes a slot from a
:class:`RateLimiter` (shared by all worker threads of one destination), then is sent with
a per-request timeout; 408, 429, 5xx, timeouts and connection errors are retried with
exponential backoff and full jitter, honouring ``Retry-After``, within
:class:`RetryPolicy`'s bounds. When retries run out, :class:`conn.errors.RetryLater` is
raised (rows stay pending and the next run resumes).

Nothing secret is logged: URLs and bodies pass through :func:`conn.secrets.redact`, query
parameters with secret-looking names are masked and headers are never logged. Each
thread's last answered request is noted (:mod:`conn.http.exchange`) for the excerpt
kept with a rejected row.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from conn import interrupt, secrets
from conn.errors import ConnError, RetryLater
from conn.http.exchange import note as note_exchange

if TYPE_CHECKING:
    from conn.destination import RateLimit

log = logging.getLogger("conn.http")

Clock = Callable[[], float]
Sleep = Callable[[float], None]


# --- rate limiting ------------------------------------------------------------------------


def interruptible_sleep(seconds: float) -> None:
    """Sleep, unless the run is asked to stop (Ctrl-C): then raise :class:`RetryLater`
    at once, so no worker waits out a backoff or a rate-limit slot of a stopping run."""
    if interrupt.wait(seconds):
        raise RetryLater("the run was asked to stop; what was not confirmed stays pending")


class RateLimiter:
    """Thread-safe token bucket (implemented as GCRA: each caller reserves the next slot).

    ``requests`` per ``per_seconds`` is the steady rate; ``burst`` is the bucket size, how
    many requests may leave at once after a quiet period (default 1: requests are evenly
    spaced, which never trips a vendor's window counter). ``daily`` caps requests per UTC
    day; once spent, :meth:`acquire` raises :class:`RetryLater`.

    Share one instance between all workers of a destination. ``clock``/``sleep``/``wall``
    are injectable for tests.
    """

    def __init__(self, requests: float, per_seconds: float = 1.0, *, burst: int | None = None,
                 daily: int | None = None, clock: Clock = time.monotonic,
                 sleep: Sleep = interruptible_sleep, wall: Clock = time.time,
                 name: str = "") -> None:
        if requests <= 0 or per_seconds <= 0:
            raise ValueError("rate limit needs positive requests and per_seconds")
        self.interval = per_seconds / requests
        self.burst = max(1, int(burst or 1))
        self.daily = daily
        self.name = name
        self._clock, self._sleep, self._wall = clock, sleep, wall
        self._lock = threading.Lock()
        self._tat = -math.inf  # theoretical arrival time of the next request
        self._paused_until = -math.inf
        self._day = -1
        self._used_today = 0

    @classmethod
    def from_rate_limit(cls, rate: RateLimit | None, **kwargs: Any) -> RateLimiter | None:
        """A limiter for a destination's :class:`~conn.destination.RateLimit` (None → None)."""
        if rate is None:
            return None
        return cls(rate.requests, rate.per_seconds, burst=rate.burst, daily=rate.daily,
                   **kwargs)

    @property
    def rate(self) -> float:
        """Steady rate in requests per second."""
        return 1.0 / self.interval

    @property
    def used_today(self) -> int:
        """Requests counted against today's daily budget."""
        return self._used_today

    def _reserve(self) -> float:
        with self._lock:
            if self.daily is not None:
                day = int(self._wall() // 86400)
                if day != self._day:
                    self._day, self._used_today = day, 0
                if self._used_today >= self.daily:
                    reset = (day + 1) * 86400 - self._wall()
                    who = f" for {self.name}" if self.name else ""
                    raise RetryLater(
                        f"daily request budget of {self.daily} exhausted{who}; it resets "
                        f"at midnight UTC (in {reset / 3600:.1f} h). Run the sync again "
                        "then: acknowledged rows are kept and the rest stay pending."
                    )
                self._used_today += 1
            now = self._clock()
            tat = max(self._tat, now, self._paused_until)
            start = max(tat - (self.burst - 1) * self.interval, self._paused_until)
            self._tat = max(tat, start) + self.interval
            wait = start - now
            return wait if wait > 1e-9 else 0.0  # float noise is no wait

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hold every worker for ``seconds`` (after a 429 with ``Retry-After``)."""
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry.

    Attempt ``n`` (0-based) failing with a retryable outcome waits a random time in
    ``[0, min(max_delay, base_delay * 2**n)]`` (full jitter), or ``Retry-After`` when the
    server sends one. Gives up after ``max_attempts`` attempts or when the next wait would
    push the total waited past ``max_total_wait``.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total_wait: float = 120.0
    retry_statuses: frozenset[int] = field(
        default_factory=lambda: frozenset({408, 425, 429, 500, 502, 503, 504})
    )

    def retryable_status(self, status: int) -> bool:
        """True for statuses worth retrying (429, 408 and 5xx except 501/505)."""
        return status in self.retry_statuses or (status >= 500 and status not in (501, 505))

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for 0-based ``attempt``."""
        cap = min(self.max_delay, self.base_delay * (2 ** attempt))
        return rng.uniform(0, cap)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- errors -------------------------------------------------------------------------------


class StillFailing(RetryLater):
    """Retries of one request ran out (or were not allowed): :class:`RetryLater` with
    what a caller may word its own message from: ``target`` (the method and the URL
    sent, secrets masked), ``attempts`` and ``reason`` (the last failure: a status and
    an excerpt of the body, or a connection error)."""

    def __init__(self, message: str, *, target: str, attempts: int, reason: str) -> None:
        super().__init__(message)
        self.target, self.attempts, self.reason = target, attempts, reason


#: A retry policy of one attempt: for a connection check, which should fail at once.
NO_RETRY = RetryPolicy(max_attempts=1)


class HttpStatusError(ConnError):
    """A non-retryable HTTP error status; ``body`` is the (redacted) response text."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.method, self.url, self.status, self.body = method, url, status, body
        super().__init__(f"{method} {url}: HTTP {status}: {body}".rstrip(": "))


_SECRET_PARAMS = ("key", "sig", "signature", "code", "client_secret")


def safe_url(url: httpx.URL | str) -> str:
    """The URL without secrets, for messages and logs: user info dropped, query values
    with secret-looking names masked, the path and query shown percent-decoded (so a
    registered secret is found whatever the URL escaped in it) and every registered
    secret redacted."""
    u = httpx.URL(str(url))
    if u.userinfo:
        u = u.copy_with(username=None, password=None)
    base = f"{u.scheme}://{u.netloc.decode('ascii', 'replace')}" if u.scheme else ""
    text = base + urllib.parse.unquote(u.raw_path.split(b"?")[0].decode("ascii", "replace"))
    if u.query:
        parts = []
        for item in u.query.decode("ascii", "replace").split("&"):
            k, eq, v = item.partition("=")
            name = urllib.parse.unquote_plus(k)
            secret = secrets.SECRET_KEY_HINTS.search(name) or name.lower() in _SECRET_PARAMS
            value = secrets.MASK if secret else urllib.parse.unquote_plus(v)
            parts.append(f"{name}={value}" if eq else name)
        text += "?" + "&".join(parts)
    return secrets.redact(text)


def body_excerpt(response: httpx.Response, limit: int = 500) -> str:
    """The first ``limit`` characters of a response body, redacted (for messages)."""
    try:
        text = response.text
    except Exception:  # undecodable body
        return ""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return secrets.redact(text)


# --- the client ---------------------------------------------------------------------------


class HttpClient:
    """``httpx.Client`` with a shared rate limiter, retries and redacted logging.

    ``rate_limit`` (a :class:`~conn.destination.RateLimit`) or ``limiter`` (a
    :class:`RateLimiter` shared with other clients) throttles requests; ``retry`` bounds
    the retries; ``timeout`` applies per request (seconds). ``transport`` replaces
    httpx's own (:class:`~conn.http.transport.KeepAliveTransport`, or a test's);
    ``clock``, ``sleep`` and ``seed`` are for tests. Thread-safe: one instance serves
    every worker.
    """

    def __init__(self, base_url: str = "", *, auth: httpx.Auth | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 30.0,
                 rate_limit: RateLimit | None = None, limiter: RateLimiter | None = None,
                 retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = interruptible_sleep,
                 seed: int | None = None, name: str = "", max_connections: int = 20,
                 stoppable: bool = True) -> None:
        self.name = name
        #: Whether a stop request (:mod:`conn.interrupt`) refuses the next attempt
        #: (False: a notice sent while conn stops, e.g. an alert on a drained stream).
        self.stoppable = stoppable
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RateLimiter.from_rate_limit(
            rate_limit, clock=clock, sleep=sleep, name=name)
        self._clock, self._sleep = clock, sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.auth = auth
        self._client = httpx.Client(
            base_url=base_url, auth=auth, headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout), transport=transport,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
        )
        #: Counters for reports and benchmarks (requests sent, retries, waits).
        self.stats = {"requests": 0, "retries": 0, "throttled": 0, "waited": 0.0}
        self._stats_lock = threading.Lock()

    # -- plumbing --

    def _count(self, key: str, amount: float = 1) -> None:
        with self._stats_lock:
            self.stats[key] += amount

    def _jitter(self, attempt: int) -> float:
        with self._rng_lock:
            return self.retry.backoff(attempt, self._rng)

    def build_request(self, method: str, url: str, **kwargs: Any) -> httpx.Request:
        """Build (without sending) a request as :meth:`request` would."""
        return self._client.build_request(method, url, **kwargs)

    def describe(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """For ``--dry-run``: the request :meth:`request` would send, secrets redacted
        (the auth's headers are listed masked; no network call, no token refresh)."""
        from conn.http.dry_run import describe_request

        extra = {}
        describe_headers = getattr(self.auth, "describe_headers", None)
        if callable(describe_headers):
            extra = describe_headers()
        return describe_request(self.build_request(method, url, **kwargs), extra_headers=extra)

    def request(self, method: str, url: str, *, json: Any = None, content: bytes | None = None,
                params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None,
                retry_on: Callable[[httpx.Response], bool] | None = None,
                retry: RetryPolicy | None = None) -> httpx.Response:
        """Send a request with rate limiting and retries; return the final response.

        Retryable outcomes (see :class:`RetryPolicy`, or ``retry_on(response)`` when given)
        are retried; if they persist, :class:`StillFailing` (a :class:`RetryLater`) is
        raised. Any other response, including 4xx, is returned for the caller to interpret
        (see :meth:`raise_for_status`). ``retry`` replaces the client's policy for this
        request (:data:`NO_RETRY` for a check that should fail at once).
        """
        policy = retry if retry is not None else self.retry
        waited = 0.0
        started = self._clock()
        last = ""
        target = f"{method} {url}"
        for attempt in range(policy.max_attempts):
            if self.stoppable and interrupt.is_requested():
                raise RetryLater("the run was asked to stop before this request was sent; "
                                 "its rows stay pending")
            if self.limiter is not None:
                self._count("waited", self.limiter.acquire())
            req = self._client.build_request(method, url, json=json, content=content,
                                             params=params, headers=headers)
            self._count("requests")
            retry_after: float | None = None
            try:
                resp = self._client.send(req)
            except httpx.TransportError as exc:  # timeouts, refused/reset connections
                last = f"{type(exc).__name__}: {secrets.redact(exc) or 'no detail'}"
            else:
                retryable = (retry_on(resp) if retry_on is not None
                             else policy.retryable_status(resp.status_code))
                if not retryable:
                    if log.isEnabledFor(logging.DEBUG):  # the URL masked only when logged
                        log.debug("%s %s -> %s", method, safe_url(req.url), resp.status_code)
                    note_exchange(method, req.url, resp.status_code, resp)
                    return resp
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
                if resp.status_code == 429:
                    self._count("throttled")
                last = f"HTTP {resp.status_code}: {body_excerpt(resp, 200)}".rstrip(": ")
                resp.close()
            target = f"{method} {safe_url(req.url)}"
            if attempt + 1 >= policy.max_attempts:
                break
            if retry_after is not None:
                delay = retry_after + self._jitter(0) * 0.1
                if self.limiter is not None:
                    self.limiter.pause(retry_after)
            else:
                delay = self._jitter(attempt)
            if waited + delay > policy.max_total_wait:
                last += (f" (server asks to wait {delay:.1f} s, beyond the "
                         f"{policy.max_total_wait:.0f} s retry budget)")
                break
            log.warning("%s failed (%s); retry %d/%d in %.2f s", target, last, attempt + 1,
                        policy.max_attempts - 1, delay)
            self._count("retries")
            self._sleep(delay)
            waited += delay
        elapsed = self._clock() - started
        # ``target`` is the URL last sent (base URL, path and query as httpx merged them).
        raise StillFailing(secrets.redact(
            f"{target} still failing after "
            f"{attempt + 1} attempt(s) over {elapsed:.1f} s: {last}. Nothing unconfirmed is "
            "lost: those rows stay pending and the next run sends them again."
        ), target=secrets.redact(target), attempts=attempt + 1, reason=secrets.redact(last))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("GET", url, ...)``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("POST", url, ...)``."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("PUT", url, ...)``."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("PATCH", url, ...)``."""
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("DELETE", url, ...)``."""
        return self.request("DELETE", url, **kwargs)

    @staticmethod
    def raise_for_status(response: httpx.Response) -> httpx.Response:
        """Raise :class:`HttpStatusError` (redacted) for a 4xx/5xx response."""
        if response.status_code >= 400:
            raise HttpStatusError(response.request.method, safe_url(response.request.url),
                                  response.status_code, body_excerpt(response))
        return response

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Reconnecting a followed source whose server went away (a restart, a killed connection).

A streaming source (:class:`~conn.streaming.StreamingSource`) that loses its connection
in the middle of :meth:`~conn.streaming.StreamingSource.changes` should not end the
follow: the server usually comes back within seconds, and what the source had handed
out but not acknowledged is redelivered by the server (a replication slot restarts at
its confirmed position, a queue requeues unacknowledged messages). :class:`Reconnect`
holds the waiting policy and the log lines, so every source says the same thing:

* the first loss logs one warning naming the server (never a credential) and why;
* attempts wait ``first``, then twice as long each time, up to ``cap`` seconds (with a
  little jitter, so followers of one server do not all come back at the same instant),
  each failure logged on one line, without a traceback;
* a successful reconnection logs how many attempts and how long it took.

While it waits, :meth:`Reconnect.pause` yields heartbeats (empty
:class:`~conn.streaming.ChangeBatch` es at the last position) every ``wait`` seconds, so
the runtime still flushes the micro-batch it holds and still notices a stop request.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from typing import Any

from conn.streaming import ChangeBatch

#: The first wait after a loss, and the longest one, in seconds.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0


class Reconnect:
    """Backoff and log lines for one source's connection (see the module docstring).
    ``what`` names the source and its server, e.g. ``"source 'queue': RabbitMQ at
    127.0.0.1:5672"``; reasons handed in must already be free of secrets."""

    def __init__(self, what: str, log: logging.Logger, *, first: float = FIRST_DELAY,
                 cap: float = MAX_DELAY) -> None:
        self.what, self.log, self.first, self.cap = what, log, first, cap
        self.attempts = 0
        self.since: float | None = None

    @property
    def lost(self) -> bool:
        """Whether the connection is down (lost and not yet back)."""
        return self.since is not None

    def delay(self) -> float:
        """The wait before the next attempt: doubling from ``first``, at most ``cap``,
        within 20 % either way."""
        base = min(self.cap, self.first * 2.0 ** max(0, self.attempts - 1))
        return min(self.cap, base * random.uniform(0.8, 1.2))

    def failed(self, reason: str) -> float:
        """Record a lost connection or a failed attempt (``reason``: a short, redacted
        text); log it and return how long to wait before the next attempt."""
        self.attempts += 1
        wait = self.delay()
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s: connection lost (%s); reconnecting in %.1f s",
                             self.what, reason, wait)
        else:
            self.log.warning("%s: still unreachable after %d attempt(s) (%s); next "
                             "attempt in %.1f s", self.what, self.attempts - 1, reason, wait)
        return wait

    def connected(self) -> None:
        """The connection is up again (or for the first time): log a reconnection."""
        if self.since is not None:
            self.log.warning("%s: reconnected after %d attempt(s) in %.1f s; what was not "
                             "acknowledged is delivered again", self.what, self.attempts,
                             time.monotonic() - self.since)
        self.attempts, self.since = 0, None

    @staticmethod
    def pause(seconds: float, wait: float, position: Any) -> Iterator[ChangeBatch]:
        """Wait ``seconds``, yielding a heartbeat at ``position`` at least every
        ``wait`` seconds (and once at the start)."""
        end = time.monotonic() + seconds
        while True:
            yield ChangeBatch(None, position)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, max(wait, 0.01)))


def reason(exc: BaseException) -> str:
    """A one-line reason for a lost connection: the exception's type and the first line
    of its message, with known secrets masked."""
    from conn import secrets
    from conn.errors import ConnError

    text = secrets.redact(str(exc)).strip().splitlines()
    if isinstance(exc, ConnError) and text:
        return text[0][:200]  # conn's own message already names the server and cause
    name = type(exc).__name__
    return f"{name}: {text[0][:200]}" if text and text[0] else name

"""A destination's HTTP client, made on first use and closed with the destination.

Imports nothing heavy: a destination class can derive from :class:`LazyClient` without
importing httpx; the client (and httpx) come with the first request.
"""

from __future__ import annotations

import abc
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conn.http.client import HttpClient

#: Guards the creation of each instance's own lock.
_GUARD = threading.Lock()


class LazyClient(abc.ABC):
    """Mixin for HTTP destinations holding one :class:`~conn.http.HttpClient`.

    :attr:`client` is made by :meth:`make_client` (the plugin's duty) on first use, once,
    under a lock of its own instance: every worker thread of a run shares one client,
    one connection pool and one rate limiter. :meth:`close` closes it (the next use makes
    a new one). List the mixin before :class:`~conn.destination.Destination`::

        class AcmeDestination(LazyClient, Destination):
            def make_client(self) -> HttpClient:
                return HttpClient(self.config["base_url"], auth=BearerToken(...),
                                  rate_limit=RATE_LIMIT, name=self.instance)
    """

    _client: HttpClient | None = None

    @abc.abstractmethod
    def make_client(self) -> HttpClient:
        """A new client for this destination's settings (called once, under the lock)."""

    def _client_lock(self) -> threading.Lock:
        lock = self.__dict__.get("_conn_client_lock")
        if lock is None:
            with _GUARD:
                lock = self.__dict__.setdefault("_conn_client_lock", threading.Lock())
        return lock

    @property
    def client(self) -> HttpClient:
        """The shared HTTP client, made on first use."""
        client = self._client
        if client is None:
            with self._client_lock():
                if self._client is None:
                    self._client = self.make_client()
                client = self._client
        return client

    def close(self) -> None:
        """Close the client (if one was made), then whatever the next class closes."""
        with self._client_lock():
            client, self._client = self._client, None
        if client is not None:
            client.close()
        super_close = getattr(super(), "close", None)
        if super_close is not None:
            super_close()

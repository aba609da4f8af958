"""Shared fixtures for the HTTP toolkit tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from conn import secrets
from conn.http import HttpClient


class FakeClock:
    """A virtual monotonic clock whose ``sleep`` advances time instantly (thread-safe)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _clean_secrets() -> Iterator[None]:
    secrets.clear()
    yield
    secrets.clear()


@pytest.fixture(autouse=True)
def _close_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every :class:`HttpClient` a test opened when it ends (its pooled sockets),
    as a destination closes its client at the end of a run."""
    opened: list[HttpClient] = []
    init = HttpClient.__init__

    def tracking_init(self: HttpClient, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(HttpClient, "__init__", tracking_init)
    yield
    for client in opened:
        client.close()

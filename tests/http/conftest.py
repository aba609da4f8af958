"""Shared fixtures for the HTTP toolkit tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from conn import secrets


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
def _close_clients(close_http_clients: None) -> None:
    """Every test closes the clients it opened (conn's pytest plugin's fixture)."""

"""Shared fixtures for the HTTP toolkit tests."""

from __future__ import annotations

import threading

import pytest


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
def _isolated(clean_secrets: None, close_http_clients: None) -> None:
    """Every test starts with no registered secrets and closes the HTTP clients it
    opened (conn's pytest plugin)."""

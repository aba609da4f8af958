"""Fixtures for the webhook destination tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conn import secrets


@pytest.fixture(autouse=True)
def _clean_secrets() -> Iterator[None]:
    secrets.clear()
    yield
    secrets.clear()


@pytest.fixture(autouse=True)
def _close_clients(close_http_clients: None) -> None:
    """Every test closes the HTTP clients its destinations opened (no stray sockets)."""

"""Fixtures for the webhook destination tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated(clean_secrets: None, close_http_clients: None) -> None:
    """Every test starts with no registered secrets and closes the HTTP clients it
    opened (conn's pytest plugin)."""

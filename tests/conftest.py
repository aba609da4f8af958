"""Shared fixtures of the core's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from conn import secrets
from conn.plugins import Registry, reset_registry

os.environ.setdefault("CONN_LOG_LEVEL", "WARNING")


def unavailable(reason: str) -> None:
    """Skip a test whose service or install is missing on a developer's machine; fail
    it under CI (``CI`` set), which installs and starts everything, so that a broken
    setup cannot pass as skipped tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI provides it: not skipped there)")
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(autouse=True)
def _clean_secrets() -> Iterator[None]:
    secrets.clear()
    yield
    secrets.clear()


@pytest.fixture
def registry() -> Iterator[Registry]:
    """A registry with only the built-ins and the in-process fakes (no entry points)."""
    from tests import fakes

    fakes.reset()
    reg = Registry(autoload=False)
    reg.add_module(fakes)
    reset_registry(reg)
    yield reg
    reset_registry(Registry(autoload=False))
    fakes.reset()

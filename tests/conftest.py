"""Shared fixtures of the core's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from conn.plugins import Registry, reset_registry
from hypothesis import settings

os.environ.setdefault("CONN_LOG_LEVEL", "WARNING")

#: Hypothesis profiles. A bare ``pytest`` is the fast loop (a few examples per property);
#: ``make test`` (scripts/test-all.sh) sets ``CONN_TEST_PROFILE=thorough`` and every
#: property runs its full count. Deadlines are off in both: the machine running the tests
#: may be busy, and a slow example is not a wrong one.
THOROUGH = os.environ.get("CONN_TEST_PROFILE", "fast") == "thorough"
settings.register_profile("thorough", deadline=None)
settings.register_profile("fast", max_examples=10, deadline=None)
settings.load_profile("thorough" if THOROUGH else "fast")


def examples(full: int) -> int:
    """How many examples a property with ``max_examples=full`` draws: all of them under
    the thorough profile, a fifth (at least 3) in the fast loop."""
    return full if THOROUGH else max(3, full // 5)


def sampled(values: list[Any], keep: int = 1) -> list[Any]:
    """``values`` as parameters of which the first ``keep`` run in the fast loop and the
    rest are marked ``slow`` (``make test`` runs them all): for parametrized tests whose
    every case is a slow round trip of the same code."""
    return [v if i < keep else pytest.param(*(v if isinstance(v, tuple) else (v,)),
                                            marks=pytest.mark.slow)
            for i, v in enumerate(values)]


def unavailable(reason: str) -> None:
    """Skip a test whose service or install is missing on a developer's machine; fail
    it under CI (``CI`` set), which installs and starts everything, so that a broken
    setup cannot pass as skipped tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI provides it: not skipped there)")
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(autouse=True)
def _clean_secrets(clean_secrets: None) -> None:
    """No test sees another's registered secrets (conn's pytest plugin)."""


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

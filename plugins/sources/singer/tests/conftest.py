"""Fixtures: real Singer connectors in cached virtual environments (see
:mod:`conn.testing.singer`: built once with uv under ``<repo>/.venvs/singer-connectors/<name>``,
reused afterwards; override the directory with ``CONN_SINGER_VENVS``)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from conn.testing import singer

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = Path(__file__).parent / "fixtures"


def connector_venv(name: str, *requirements: str) -> Path:
    """A virtual environment holding ``requirements`` (created once, then reused)."""
    return singer.connector_venv(name, *requirements, root=ROOT)


@pytest.fixture(scope="session")
def tap_jsonl() -> Path:
    """The ``tap-jsonl`` executable (an SDK-built tap from PyPI)."""
    return connector_venv("tap-jsonl", "tap-jsonl") / "bin" / "tap-jsonl"


@pytest.fixture(scope="session")
def tap_mysql_venv() -> Path:
    """A venv with ``pipelinewise-tap-mysql`` (a legacy singer-python tap) and PyMySQL."""
    return connector_venv("pipelinewise-tap-mysql", "pipelinewise-tap-mysql")


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """A Python with singer-sdk, to run the in-suite fixture tap."""
    return connector_venv("singer-sdk", "singer-sdk") / "bin" / "python"


@pytest.fixture(scope="session")
def edge_tap(sdk_python: Path) -> list[str]:
    return [str(sdk_python), str(FIXTURES / "edge_tap.py")]


@pytest.fixture(autouse=True)
def _clean_secrets():
    from conn import secrets

    yield
    with contextlib.suppress(Exception):
        secrets.clear()


#: Conformance tests that start the tap several times (a read, then a resumed read):
#: the fast loop keeps the single-read ones, ``make test`` runs these too
#: (tests/test_singer.py resumes from a bookmark in the fast loop).
SLOW_CONFORMANCE = {"test_resumable_from_state"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if getattr(item, "originalname", None) in SLOW_CONFORMANCE:
            item.add_marker(pytest.mark.slow)

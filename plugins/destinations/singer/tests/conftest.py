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
def target_jsonl() -> Path:
    """``target-jsonl`` from PyPI (a singer-python target)."""
    return connector_venv("target-jsonl", "target-jsonl") / "bin" / "target-jsonl"


@pytest.fixture(scope="session")
def target_csv() -> Path:
    """``meltanolabs-target-csv`` from PyPI (a singer-sdk target)."""
    return connector_venv("meltanolabs-target-csv", "meltanolabs-target-csv") / "bin" / "target-csv"


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """A Python with singer-sdk, to run the in-suite fixture target."""
    return connector_venv("singer-sdk", "singer-sdk") / "bin" / "python"


@pytest.fixture(scope="session")
def edge_target(sdk_python: Path) -> list[str]:
    return [str(sdk_python), str(FIXTURES / "edge_target.py")]


@pytest.fixture(autouse=True)
def _clean_secrets():
    from conn import secrets

    yield
    with contextlib.suppress(Exception):
        secrets.clear()


#: Conformance tests that start the target process many times (once per mode, per
#: batch): the fast loop keeps the single-write ones, ``make test`` runs these too.
SLOW_CONFORMANCE = {"test_declared_modes_supported", "test_write_more_than_batch_size",
                    "test_write_unicode_and_long_strings"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if getattr(item, "originalname", None) in SLOW_CONFORMANCE:
            item.add_marker(pytest.mark.slow)

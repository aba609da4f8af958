"""Test kit for plugin authors: harness helpers, whole-sync runs, conformance suites,
HTTP fakes and cassettes.

Loaded by pytest through the ``pytest11`` entry point (``conn.testing.pytest_plugin``).
Names are imported on first use: ``from conn.testing import SyncHarness, make_request``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule defining it.
_EXPORTS = {
    "destination_suite": "conformance",
    "source_suite": "conformance",
    "make_request": "harness",
    "read_all": "harness",
    "write_records": "harness",
    "MemorySource": "memory",
    "SyncHarness": "sync",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule defining ``name`` on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conn.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"conn.testing.{module}"), name)

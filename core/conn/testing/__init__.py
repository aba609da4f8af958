"""Test kit for plugin authors: harness helpers, conformance suites, HTTP fakes.

Loaded by pytest through the ``pytest11`` entry point (``conn.testing.pytest_plugin``).
"""

from typing import Any

__all__ = ["destination_suite", "source_suite"]


def __getattr__(name: str) -> Any:
    """``conn.testing.source_suite`` / ``destination_suite``, imported on first use."""
    if name in __all__:
        from conn.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'conn.testing' has no attribute {name!r}")

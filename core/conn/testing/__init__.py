"""Test kit for plugin authors: harness helpers, conformance suites, HTTP fakes.

Loaded by pytest through the ``pytest11`` entry point (``conn.testing.pytest_plugin``).
"""

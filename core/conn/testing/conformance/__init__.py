"""Conformance suites for plugin authors: one call builds a whole pytest test class.

.. code-block:: python

    # tests/test_conformance.py of a source plugin
    from conn.testing.conformance import source_suite
    from my_plugin.source import MySource

    TestMySource = source_suite(
        MySource,
        config=lambda ctx: {"path": str(make_data(ctx.tmp_path))},
        stream="people",
        expected_rows=[{"id": 1, "email": "ana@example.com"}],
        bad_config={"path": 42},
    )

    # tests/test_conformance.py of an HTTP destination
    TestMyDestination = destination_suite(
        MyDestination,
        config=lambda ctx: {"base_url": ctx.server.url, "token": "s3cr3t-token"},
        object="contacts",
        sample_records=[{"id": "1", "email": "ana@example.com", "name": "Ana"}],
        rejected_record={"id": "bad", "email": "not-an-email"},
        server=lambda srv: srv.configure(reject=["bad"]),
    )

Assign the result to a module-level name starting with ``Test`` and pytest collects it.
``config`` is a mapping or a callable receiving a :class:`SuiteContext` (a fresh
``tmp_path`` per test and, with ``server=``, a running
:class:`~conn.testing.http.FaultServer`). A check that does not apply is skipped with the
reason; a check that fails because of a known plugin bug is marked with
``xfail={"test_name": "reason"}`` (strict: it fails once the bug is fixed).

Checks shared by both suites: the config schema is valid JSON Schema; a good config
validates; a bad config is rejected with a :class:`~conn.errors.ConfigError` naming the
path; ``check()`` passes (and fails with :class:`~conn.errors.CheckFailed` or
:class:`~conn.errors.ConfigError` for ``failing_config``); no secret value appears in
logs, errors or ``repr``; the plugin's entry point module imports nothing heavy
(:data:`HEAVY_MODULES` plus ``heavy_modules=``), measured in a fresh interpreter.

Source checks: discovery returns Arrow schemas and primary keys; reading returns the
expected rows; no batch exceeds ``batch_rows``; peak memory of a read (Python heap via
``tracemalloc`` plus Arrow's memory pool) stays within a bound set by the batch size;
bookmarks survive a JSON round trip and resuming from them loses no row.

Destination checks: objects are well formed; writes of an empty batch, the samples, a
batch larger than ``batch_size`` (split by the runtime, never over the limit), nulls,
unicode and long strings are acknowledged; the ``rejected_record`` is rejected with a
reason while its batch-mates are acknowledged; a write with ``failing_config`` (refused
credentials) leaves every row pending and rejects none; each declared mode works
(``delete`` for mirror); dry-run request descriptions hold no secret.
"""

from conn.testing.conformance._common import (
    HEAVY_MODULES,
    UNICODE_SAMPLES,
    SuiteContext,
    imported_heavy_modules,
)
from conn.testing.conformance.destination import destination_suite
from conn.testing.conformance.source import source_suite

__all__ = ["HEAVY_MODULES", "UNICODE_SAMPLES", "SuiteContext", "destination_suite",
           "imported_heavy_modules", "source_suite"]

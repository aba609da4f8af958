"""Alerts on a run's outcome (``alerts:`` in conn.yml; ``docs/alerts.md``).

:func:`after_run` is called by :func:`conn.runtime.runner.run_syncs` after every run of
``conn sync`` and of ``conn serve``'s schedule; ``conn alerts list`` and ``conn alerts
test`` read and exercise the same configuration and state.
"""

from __future__ import annotations

from conn.alerts.engine import Delivery, after_run

__all__ = ["Delivery", "after_run"]

"""Acknowledged state: what each sync's destination confirmed, the change planner that
diffs a run against it, and the backends that store it.

The public surface is here: the contracts (:mod:`conn.state.contracts`, whose docstring
says how to write a backend), the planner every backend hands out, the run-history row,
and the routing of keys to partitions. Everything else is machinery::

    contracts.py      StateStore, SyncState, Storage, BatchPlan, Deletions
    history.py        the run-history row
    target.py         what a sync's state describes (refused when it changes)
    typed_text.py     typed values (match values, keys) stored as text, exactly
    locks.py          per-sync run locks on local files
    planner/          PlanningSyncState: sorted state, seen-marks, lookups, new keys,
                      row hashes, the compiled kernels
    backends/         memory, postgres, duckdb/ (store, sorted-state cache, migrations)

Names other than the contracts are loaded on first access: importing the contracts does
not import numpy, DuckDB or the planner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conn.state.contracts import BatchPlan, Deletions, StateStore, Storage, SyncState

if TYPE_CHECKING:
    from conn.state.history import history_row
    from conn.state.planner import PlanningSyncState
    from conn.state.planner.row_hashes import PARTITIONS, check_canary, partition_of_keys

#: Lazily loaded public name -> the module defining it.
_LAZY = {
    "PlanningSyncState": "conn.state.planner",
    "history_row": "conn.state.history",
    "PARTITIONS": "conn.state.planner.row_hashes",
    "check_canary": "conn.state.planner.row_hashes",
    "partition_of_keys": "conn.state.planner.row_hashes",
}

__all__ = ["PARTITIONS", "BatchPlan", "Deletions", "PlanningSyncState", "StateStore",
           "Storage", "SyncState", "check_canary", "history_row", "partition_of_keys"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

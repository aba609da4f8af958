"""The change planner: diffs each mapped batch against the acknowledged state.

:class:`~conn.state.planner.sync_state.PlanningSyncState` is the
:class:`~conn.state.contracts.SyncState` every backend hands out; the rest of this package
is its machinery. Names are loaded on first access, so importing one module of the
package (say :mod:`~conn.state.planner.kernels`) does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conn.state.planner.sync_state import (
        NULL_KEY_ID,
        REASON_DUPLICATE,
        REASON_NULL,
        PlanningSyncState,
    )

__all__ = ["NULL_KEY_ID", "REASON_DUPLICATE", "REASON_NULL", "PlanningSyncState"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("conn.state.planner.sync_state"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The optional compiled kernels (the ``conn-speedups`` package), if installed.

conn never requires them: each caller keeps its vectorised Arrow/DuckDB/numpy path and
uses a kernel only after checking it against that path (see :mod:`conn.state.accel` and
:mod:`conn.consent.hashing`). ``CONN_SPEEDUPS=0`` switches them off.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

_module: ModuleType | bool | None = False  # False: not looked up yet


def kernels() -> ModuleType | None:
    """The ``conn_speedups`` module, or ``None`` (not installed or ``CONN_SPEEDUPS=0``)."""
    global _module
    if _module is False:
        found = None
        if os.environ.get("CONN_SPEEDUPS", "1") != "0":
            try:
                found = importlib.import_module("conn_speedups")
            except ImportError:
                found = None
        _module = found
    return _module  # type: ignore[return-value]


def reset() -> None:
    """Look the module up again at the next use (after ``CONN_SPEEDUPS`` changed)."""
    global _module
    _module = False

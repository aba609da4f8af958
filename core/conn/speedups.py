"""Finds the optional compiled kernels: the ``conn-speedups`` package (module
``conn_speedups``), if installed.

conn never requires them. Every caller reaches them through
:mod:`conn.state.planner.kernels`, which uses a kernel only after checking it against the
DuckDB, numpy or ``hashlib`` path it replaces. This module only finds the package:
``CONN_SPEEDUPS=0`` switches it off, and a build for another kernel API is ignored.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)

#: The ``conn_speedups.API_VERSION`` this code was written for: a build for another
#: kernel API (not rebuilt after an upgrade) is ignored rather than misused.
API_VERSION = 2

_module: ModuleType | bool | None = False  # False: not looked up yet


def find() -> ModuleType | None:
    """The ``conn_speedups`` module, or ``None`` (not installed, built for another kernel
    API, or ``CONN_SPEEDUPS=0``)."""
    global _module
    if _module is False:
        found = None
        if os.environ.get("CONN_SPEEDUPS", "1") != "0":
            try:
                found = importlib.import_module("conn_speedups")
            except ImportError:
                found = None
            if found is not None and getattr(found, "API_VERSION", None) != API_VERSION:
                log.warning("conn-speedups at %s has kernel API %s, this conn needs %s: "
                            "not used (reinstall it: make dev, or pip install ./speedups)",
                            getattr(found, "__file__", "?"),
                            getattr(found, "API_VERSION", "none"), API_VERSION)
                found = None
        _module = found
    return _module  # type: ignore[return-value]


def reset() -> None:
    """Look the module up again at the next use (after ``CONN_SPEEDUPS`` changed)."""
    global _module
    _module = False

"""Sync state files a run of this process holds open, shared with this process's readers.

DuckDB refuses, within one process, a read-only connection to a file that a read-write
connection holds (and the reverse): "different configuration than existing
connections". ``conn serve`` and ``conn ui`` read a sync's state (its rejected rows, its
target) in the same process that runs it. So a run registers its connection here, under
a per-file lock, and a reader holding that lock uses a cursor on the run's connection
instead of opening the file; a run starting while a reader has the file open waits for
the read (milliseconds) instead of failing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_GUARD = threading.Lock()
_LOCKS: dict[str, threading.RLock] = {}
_OPEN: dict[str, Any] = {}


def _key(path: Path) -> str:
    return str(Path(path).resolve())


def file_lock(path: Path) -> threading.RLock:
    """The process-wide lock of one state file."""
    with _GUARD:
        return _LOCKS.setdefault(_key(path), threading.RLock())


@contextlib.contextmanager
def reading(path: Path) -> Iterator[Any | None]:
    """Hold ``path``'s lock; yield the storage a run of this process has open on it, or
    None (then open the file read-only, inside this block)."""
    with file_lock(path):
        yield _OPEN.get(_key(path))


@contextlib.contextmanager
def cursor(storage: Any) -> Iterator[Any]:
    """A cursor on a run's connection (closed after the block)."""
    cur = storage.con.cursor()
    try:
        yield cur
    finally:
        cur.close()


def opened(path: Path) -> Any | None:
    """The storage a run of this process has open on ``path``, or None."""
    return _OPEN.get(_key(path))


def register(path: Path, storage: Any) -> None:
    """A run opened ``path`` (call with :func:`file_lock` held, right after opening)."""
    _OPEN[_key(path)] = storage


def unregister(path: Path) -> None:
    _OPEN.pop(_key(path), None)


def dicts(cur: Any) -> list[dict[str, Any]]:
    """The rows of an executed cursor as dicts."""
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

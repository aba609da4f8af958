"""One ``conn serve`` per project: an ``flock`` on ``.conn/serve.lock``.

The kernel releases an ``flock`` when its holder dies, however it dies (``kill -9``
included), so a lock file left behind never blocks a restart; the file's contents (pid,
host, start time, address) only name the holder in the refusal. Local files only, like
the per-sync run locks: syncs shared between machines coordinate through the PostgreSQL
state backend's locks instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from conn.errors import SyncLocked


class ServeLocked(SyncLocked):
    """Another ``conn serve`` runs this project (exit code 5, like a locked sync)."""


class ServeLock:
    """Held from :meth:`acquire` to :meth:`release` (or the process's end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> ServeLock:
        """Take the lock or raise :class:`ServeLocked` naming the process holding it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise ServeLocked(describe(self.path, holder)) from None
        self._fd = fd
        self.update()
        return self

    def update(self, **extra: Any) -> None:
        """Write who holds the lock (and, once known, where it serves)."""
        if self._fd is None:
            return
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **extra}
        data = json.dumps(info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Let go (the file stays: removing it would race with a starting serve)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None


def describe(path: Path, holder: dict[str, Any] | None) -> str:
    """The refusal: which process serves the project already."""
    who = ""
    if holder:
        who = f" (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started " \
              f"{holder.get('started', '?')}"
        who += f", serving {holder['url']})" if holder.get("url") else ")"
    return (f"conn serve is already running for this project{who}; stop that process "
            f"first (lock: {path})")

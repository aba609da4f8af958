"""Per-sync run locks on local files (``flock``), with the holder named in the message.

The kernel releases an ``flock`` when its holder dies (exit, crash, ``kill -9``), so a lock
file left behind by a dead process is simply taken over; the file's contents (pid, host,
start time, run id) only serve the error message. A whole-sync run takes the sync's lock
exclusively; a partitioned run takes it shared plus each partition's lock exclusively, so
partitioned workers coexist but never with a whole-sync run or each other's partitions.
Local files only: on a network file system use the PostgreSQL backend.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conn.errors import SyncLocked


def safe_name(sync: str) -> str:
    """A file-name-safe, unambiguous form of a sync name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"%{ord(m.group()):02X}", sync)
    return safe if not safe.startswith(".") else "%2E" + safe[1:]


def holder_info(run_id: str) -> dict[str, Any]:
    """Who holds a lock: written into the lock for error messages."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def describe_holder(sync: str, info: dict[str, Any] | None) -> str:
    """The ``SyncLocked`` message for a sync held by ``info``."""
    msg = f"sync {sync!r} is already running"
    if info:
        msg += (f" (pid {info.get('pid', '?')} on {info.get('host', '?')}, run "
                f"{info.get('run_id', '?')}, started {info.get('started', '?')})")
    return msg + "; wait for it to finish, or stop that process first"


class SyncFileLock:
    """Holds the lock files of one run of one sync until :meth:`release`."""

    def __init__(self, lock_dir: Path, sync: str, run_id: str,
                 partitions: frozenset[int] | None = None) -> None:
        self.lock_dir = lock_dir
        self.sync = sync
        self.run_id = run_id
        self.partitions = partitions
        self._fds: list[int] = []

    def _take(self, path: Path, exclusive: bool, write_info: bool) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            info = self._read_info(fd)
            os.close(fd)
            raise SyncLocked(describe_holder(self.sync, info)) from None
        self._fds.append(fd)
        if write_info:
            data = json.dumps(holder_info(self.run_id)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)

    @staticmethod
    def _read_info(fd: int) -> dict[str, Any] | None:
        try:
            raw = os.pread(fd, 4096, 0)
            return json.loads(raw) if raw else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> SyncFileLock:
        """Take the locks or raise :class:`SyncLocked` (holding none of them)."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        base = self.lock_dir / f"{safe_name(self.sync)}.lock"
        try:
            if self.partitions is None:
                self._take(base, True, True)
            else:
                self._take(base, False, False)
                for p in sorted(self.partitions):
                    self._take(self.lock_dir / f"{safe_name(self.sync)}.p{p}.lock", True, True)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Release every lock held (the files stay: removing them would race)."""
        while self._fds:
            fd = self._fds.pop()
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextlib.contextmanager
def process_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), waited for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

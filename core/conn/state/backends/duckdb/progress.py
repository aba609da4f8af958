"""A run's progress counters (the ``progress`` table), written at most once a second.

Each state commit is one DuckDB transaction, and each statement in it costs about a
millisecond of CPU whatever its size: the counters' ``UPDATE`` was a fifth of a
streaming acknowledgement window's commit (docs/performance.md, ``pg_stream``). So a
commit adds its counts here and writes them (its own and those held before) only when
:data:`EVERY_S` passed since the last write; the end of the run writes the rest. The
counters are diagnostics, read by nothing in conn (the run's report has its own): after
a crash they may miss the last second of commits, the commits themselves are whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Execute = Callable[[str, list[Any]], Any]

#: Seconds between two writes of the counters during a run.
EVERY_S = 1.0

_UPDATE = ("UPDATE progress SET batches = batches + ?, acknowledged = acknowledged + ?, "
           "deleted = deleted + ?, rejected = rejected + ?, updated_at = now() "
           "WHERE run_id = ?")


class DeferredProgress:
    """Counts held between writes: :meth:`add` a commit's counts (written in its
    transaction when due), :meth:`committed` once that transaction committed (a
    rolled-back commit counts nothing), :meth:`flush` what is held at the end."""

    def __init__(self, every: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self._clock = every, clock
        self._held = [0, 0, 0, 0]  # batches, acknowledged, deleted, rejected
        self._pending = self._held
        self._due = False
        self._last = -float("inf")
        self._run_id = ""

    def add(self, execute: Execute, run_id: str, rows: int, rejected: int, *,
            deletes: bool) -> None:
        """Count one commit, inside its transaction; ``execute`` (the store's) runs the
        ``UPDATE`` of the counters (this commit's counts included) when they are due."""
        counts = [1, 0 if deletes else rows, rows if deletes else 0, rejected]
        self._pending = [a + b for a, b in zip(self._held, counts, strict=True)]
        self._run_id = run_id
        self._due = self._clock() - self._last >= self.every
        if self._due:
            execute(_UPDATE, [*self._pending, run_id])

    def committed(self) -> None:
        """The transaction of the last :meth:`add` committed."""
        if self._due:
            self._held, self._last = [0, 0, 0, 0], self._clock()
        else:
            self._held = self._pending

    def flush(self, execute: Execute) -> None:
        """Write what is held, if anything (the end of the run)."""
        if any(self._held):
            held, self._held = self._held, [0, 0, 0, 0]
            execute(_UPDATE, [*held, self._run_id])

"""The embedded store's experiments (:mod:`conn.state.experiments`) in a DuckDB file of
their own, ``state/experiments.duckdb``: the sync files and the run history keep their
formats, and a run records members without holding the run-history lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from conn.state.backends.duckdb.connection import connect
from conn.state.experiments import DuckDBExperiments, prepare
from conn.state.locks import process_lock


def file_experiments(root: Path) -> DuckDBExperiments:
    """Experiments kept under the store's folder ``root``; each operation opens the file
    under a lock shared by threads and processes (a run records, a report reads)."""
    path = root / "state" / "experiments.duckdb"

    closed: list[duckdb.DuckDBPyConnection] = []

    @contextmanager
    def connection() -> Iterator[duckdb.DuckDBPyConnection]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with process_lock(root / "locks" / "experiments.lock"):
            con = connect(path, hot=False)
            try:
                prepare(con)
                yield con
            finally:
                if con not in closed:
                    con.close()
                closed.clear()

    def compact(con: duckdb.DuckDBPyConnection) -> None:
        # DuckDB keeps deleted rows' bytes in free blocks: a forgotten key must not stay
        # in the file, so it is rewritten (as conn forget does with the sync files).
        from conn.state.backends.duckdb.privacy import rewrite

        closed.append(con)
        rewrite(path, con)

    return DuckDBExperiments(connection, compact)


class KeepsExperiments:
    """The embedded store's :meth:`~conn.state.contracts.StateStore.experiment_store`
    (a mixin: the store's module stays within its size bound)."""

    root: Path

    def experiment_store(self) -> DuckDBExperiments:
        """See :mod:`conn.state.experiments` (in ``state/experiments.duckdb``)."""
        return file_experiments(self.root)

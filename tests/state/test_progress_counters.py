"""The run's progress counters of the DuckDB store: written at most once a second
during a run, whole at its end; a rolled-back commit counts nothing."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from conn.state.backends.duckdb.progress import DeferredProgress
from conn.state.backends.duckdb.store import DuckDBStateStore
from hypothesis import given, settings
from hypothesis import strategies as st


def _progress(store: DuckDBStateStore, run: str) -> tuple[int, int, int, int]:
    con = duckdb.connect(str(store.sync_path("s")), read_only=True)
    try:
        row = con.execute("SELECT batches, acknowledged, deleted, rejected FROM progress "
                          "WHERE run_id = ?", [run]).fetchall()[0]
    finally:
        con.close()
    return tuple(row)


def test_counters_are_whole_at_the_end_of_a_run(tmp_path) -> None:
    store = DuckDBStateStore(tmp_path)
    with store.open_sync("s", "r1") as s:
        for lo in range(0, 50, 10):  # five commits within a second: one write, then held
            keys = pa.array([str(i) for i in range(lo, lo + 10)])
            p = s.plan(keys, pa.record_batch({"v": list(range(10))}))
            s.commit(keys, p.hashes, keys, pa.array([True] * 9 + [False]), [(9, "no")])
    assert _progress(store, "r1") == (5, 45, 0, 5)


class _Transactions:
    """The counters as a database would hold them: a statement counts once its
    transaction commits."""

    def __init__(self) -> None:
        self.stored = [0, 0, 0, 0]
        self.open: list[list[int]] = []
        self.writes = 0

    def __call__(self, sql: str, params: list) -> None:
        assert params[4] == "r"
        self.open.append(params[:4])

    def end(self, commit: bool) -> bool:
        wrote = bool(self.open)
        for params in self.open if commit else []:
            self.stored = [a + b for a, b in zip(self.stored, params, strict=True)]
            self.writes += 1
        self.open = []
        return wrote


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3), st.integers(0, 500), st.integers(0, 5),
                          st.booleans(), st.booleans()), max_size=40))
def test_written_counts_are_those_of_committed_transactions(commits) -> None:
    # (seconds since the previous commit, rows, rejected, deletes, committed or rolled back)
    now = [0.0]
    progress = DeferredProgress(every=1.0, clock=lambda: now[0])
    db, expected, last_write = _Transactions(), [0, 0, 0, 0], None
    for gap, rows, rejected, deletes, ok in commits:
        now[0] += gap
        progress.add(db, "r", rows, rejected, deletes=deletes)
        if ok:
            progress.committed()
            expected = [a + b for a, b in zip(
                expected, [1, 0 if deletes else rows, rows if deletes else 0, rejected],
                strict=True)]
        if db.end(ok) and ok:
            assert last_write is None or now[0] - last_write >= 1.0  # at most once a second
            last_write = now[0]
    progress.flush(db)
    db.end(True)
    assert db.stored == expected

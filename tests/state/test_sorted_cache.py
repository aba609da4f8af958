"""The DuckDB store's sorted-state cache: used only when its generation matches the state
file's; missing, stale, corrupt or mismatched caches fall back to the records."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from conn.state.backends.duckdb import migrations, sorted_cache
from conn.state.backends.duckdb import store as duckdb_store
from conn.state.backends.duckdb.connection import connect
from conn.state.backends.duckdb.sorted_cache import PARTS, SortedCache
from conn.state.backends.duckdb.store import DuckDBStateStore, DuckDBStorage

from tests.state.helpers import cache_files, run_snapshot


def _snapshots() -> list[dict[str, int]]:
    base = {f"k{i}": i for i in range(3000)}
    second = {k: v + (1 if v % 7 == 0 else 0) for k, v in base.items() if v % 11}
    second.update({f"n{i}": i for i in range(200)})
    third = {k: v + (1 if v % 5 == 0 else 0) for k, v in second.items() if v % 13}
    return [base, second, third, third]


def _expected(tmp_path: Path) -> list[dict[str, list[str]]]:
    """The plans with the cache disabled."""
    store = DuckDBStateStore(tmp_path / "nocache")
    orig = SortedCache.read
    try:
        SortedCache.read = lambda self, *args: None  # type: ignore[method-assign]
        return [run_snapshot(store, s) for s in _snapshots()]
    finally:
        SortedCache.read = orig  # type: ignore[method-assign]


def test_cache_is_written_and_used(tmp_path: Path, used: list[bool]) -> None:
    expected = _expected(tmp_path)
    store = DuckDBStateStore(tmp_path / "c")
    got = [run_snapshot(store, s) for s in _snapshots()]
    assert got == expected
    assert used == [False, True, True, True]  # the first run has no state yet
    assert len(cache_files(store)) == len(PARTS)  # one generation only


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "empty",
                                    "wrong_length"])
def test_damaged_cache_falls_back(tmp_path: Path, used: list[bool], damage: str) -> None:
    expected = _expected(tmp_path)
    store = DuckDBStateStore(tmp_path / "c")
    snaps = _snapshots()
    got = [run_snapshot(store, snaps[0])]
    files = cache_files(store)
    pairs = next(f for f in files if f.name.endswith(".pairs.npy"))
    if damage == "missing":
        pairs.unlink()
    elif damage == "truncated":
        pairs.write_bytes(pairs.read_bytes()[:-8])
    elif damage == "garbage":
        pairs.write_bytes(b"not a numpy file" * 10)
    elif damage == "empty":
        pairs.write_bytes(b"")
    else:
        np.save(pairs, np.load(pairs)[:-2])  # one record short
    got += [run_snapshot(store, s) for s in snaps[1:]]
    assert got == expected
    assert used == [False, False, True, True]  # fell back, then rewrote the cache


def test_crash_between_compaction_and_cache_write(tmp_path: Path, used: list[bool],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _expected(tmp_path)
    store = DuckDBStateStore(tmp_path / "c")
    snaps = _snapshots()
    got = [run_snapshot(store, snaps[0])]
    old = cache_files(store)
    # The second run compacts (a new generation) but "crashes" before writing the cache.
    monkeypatch.setattr(DuckDBStorage, "write_cache", lambda self, *args, **kw: None)
    got.append(run_snapshot(store, snaps[1]))
    assert cache_files(store) == old
    monkeypatch.undo()
    monkeypatch.setattr(SortedCache, "read", _spy_again(used))
    got += [run_snapshot(store, s) for s in snaps[2:]]
    assert got == expected
    # Opens: run 2 used run 1's cache; run 3 found a stale generation and fell back.
    assert used == [False, True, False, True]


def _spy_again(used: list[bool]):  # type: ignore[no-untyped-def]
    real = SortedCache.read

    def spy(self: SortedCache, *args):  # type: ignore[no-untyped-def]
        state = real(self, *args)
        used.append(state is not None)
        return state

    return spy


def test_generation_mismatch_falls_back(tmp_path: Path, used: list[bool]) -> None:
    """Cache files of another generation (e.g. a state file restored from a backup)."""
    expected = _expected(tmp_path)
    store = DuckDBStateStore(tmp_path / "c")
    snaps = _snapshots()
    got = [run_snapshot(store, snaps[0])]
    con = connect(store.sync_path("s"))
    migrations.write_meta(con, {duckdb_store.CACHE_GENERATION: uuid.uuid4().hex})
    con.close()
    got += [run_snapshot(store, s) for s in snaps[1:]]
    assert got == expected
    assert used == [False, False, True, True]


def test_state_file_without_generation(tmp_path: Path, used: list[bool]) -> None:
    """A state file written before the cache existed: fallback, then a generation."""
    expected = _expected(tmp_path)
    store = DuckDBStateStore(tmp_path / "c")
    snaps = _snapshots()
    got = [run_snapshot(store, snaps[0])]
    con = connect(store.sync_path("s"))
    con.execute("DELETE FROM meta WHERE key = ?", [duckdb_store.CACHE_GENERATION])
    con.close()
    got += [run_snapshot(store, s) for s in snaps[1:]]
    assert got == expected
    assert used == [False, False, True, True]


def test_partitions_do_not_use_the_cache(tmp_path: Path, used: list[bool]) -> None:
    store = DuckDBStateStore(tmp_path / "c")
    run_snapshot(store, _snapshots()[0])
    with store.open_sync("s", "r", partitions=frozenset({0, 1})) as st:
        st.finish()
    assert used == [False]


@pytest.mark.parametrize(("step_rows", "in_memory"),
                         [(1_000_000, 0), (333, 0),
                          pytest.param(1, 0, marks=pytest.mark.slow), (333, 10**9)])
def test_written_cache_equals_sorted_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           step_rows: int, in_memory: int) -> None:
    """The cache streamed in slices (``in_memory`` 0) and the one built in memory both
    equal the SortedState built from the records."""
    from conn.state.planner.sorted_state import SortedState

    monkeypatch.setattr(duckdb_store, "COMPACT_ROWS", step_rows)
    monkeypatch.setattr(sorted_cache, "SLICE_ROWS", step_rows)
    monkeypatch.setattr(sorted_cache, "IN_MEMORY_KEYS", in_memory)
    store = DuckDBStateStore(tmp_path / "c")
    run_snapshot(store, _snapshots()[0])
    con = connect(store.sync_path("s"))
    st = DuckDBStorage(con, store.sync_path("s"))
    try:
        cached = st.cache.read(st.generation(), st.record_count())
        built = SortedState(*st.load(None))
        streamed = SortedState.from_pairs(st.sorted_pairs())  # the open without a cache
        assert cached is not None
        for name, arr in built.parts().items():
            np.testing.assert_array_equal(cached.parts()[name], arr)
            np.testing.assert_array_equal(streamed.parts()[name], arr)
        assert cached.shift == built.shift == streamed.shift
    finally:
        con.close()


def test_background_cache_is_complete_before_the_sync_is_released(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache built in memory is written on a thread while DuckDB closes the file; the
    sync's lock is released only once it is on disk (the next run may open it)."""
    import time

    from conn.state.locks import SyncFileLock

    real = SortedCache._build_and_write
    events: list[str] = []

    def slow(self: SortedCache, files: object, pairs: object) -> None:  # on the thread
        time.sleep(0.3)
        real(self, files, pairs)
        events.append("written")

    release = SyncFileLock.release

    def spy_release(self: SyncFileLock) -> None:
        events.append("released")
        release(self)

    monkeypatch.setattr(SortedCache, "_build_and_write", slow)
    monkeypatch.setattr(SyncFileLock, "release", spy_release)
    store = DuckDBStateStore(tmp_path / "c")
    run_snapshot(store, _snapshots()[0])
    assert events == ["written", "released"]
    assert len(cache_files(store)) == len(PARTS)


def test_background_cache_failure_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_args: object, **_kw: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    store = DuckDBStateStore(tmp_path / "c")
    run_snapshot(store, _snapshots()[0])
    assert "could not write the sorted-state cache (disk full)" in caplog.text
    assert cache_files(store) == []  # no temporary files left behind
    monkeypatch.undo()
    assert run_snapshot(store, _snapshots()[1]) == _expected(tmp_path)[1]

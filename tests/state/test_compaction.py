"""DuckDB state compaction in partition ranges: same result as one pass, sorted index."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from conn.errors import StateError
from conn.state.backends.duckdb import migrations, sorted_cache
from conn.state.backends.duckdb import store as duckdb_store
from conn.state.backends.duckdb.store import DuckDBStorage
from conn.state.planner import row_hashes


def _rows(kids: np.ndarray, tag: str) -> pa.Table:
    return pa.table({
        "kid": pa.array(kids, pa.uint64()),
        "key": pa.array([f"k{k}" for k in kids], pa.string()),
        "hash": pa.array(kids ^ np.uint64(7), pa.uint64()),
        "match_value": pa.array([f"{tag}{k}" for k in kids], pa.string()),
        "partition": pa.array(row_hashes.partitions_of(kids), pa.uint16()),
    })


def _empty_rejections() -> pa.Table:
    return pa.table({"kid": pa.array([], pa.uint64()), "key": pa.array([], pa.string()),
                     "partition": pa.array([], pa.uint16()),
                     "reason": pa.array([], pa.string())})


# Compacting one row at a time takes seconds: the fast loop compacts in ranges of 700.
@pytest.mark.parametrize("step_rows", [1_000_000, 700, pytest.param(1, marks=pytest.mark.slow)])
def test_compaction_in_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              step_rows: int) -> None:
    monkeypatch.setattr(duckdb_store, "COMPACT_ROWS", step_rows)
    path = tmp_path / "s.duckdb"
    con = duckdb.connect(str(path))
    migrations.prepare(con, str(path), kind="sync", identity={"sync": "s"})
    st = DuckDBStorage(con, path)
    rng = np.random.default_rng(1)
    kids = np.unique(rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64))
    st.commit("r1", _rows(kids, "a"), _empty_rejections(), deletes=False)
    st.compact()
    # A second run: a third of the keys change twice (the later change wins), a tenth
    # are deleted, and new keys arrive.
    changed, gone = kids[::3], kids[1::10]
    new = np.unique(rng.integers(0, 2**64 - 1, 1000, dtype=np.uint64))
    st.commit("r2", _rows(changed, "b"), _empty_rejections(), deletes=False)
    st.commit("r2", _rows(changed, "c"), _empty_rejections(), deletes=False)
    st.commit("r2", _rows(gone, "x"), _empty_rejections(), deletes=True)
    st.commit("r2", _rows(new, "n"), _empty_rejections(), deletes=False)
    st.compact()

    expect = {int(k): f"a{k}" for k in kids}
    expect.update({int(k): f"c{k}" for k in changed})
    for k in gone:
        expect.pop(int(k), None)
    expect.update({int(k): f"n{k}" for k in new})
    got = dict(con.execute("SELECT kid, match_value FROM acknowledged").fetchall())
    assert got == expect
    assert con.execute("SELECT count(*) FROM changes").fetchall()[0][0] == 0
    index_kids, index_hashes = st.load(None)
    assert len(index_kids) == len(expect)
    assert np.all(index_kids[1:] > index_kids[:-1])  # sorted, one entry per key
    assert set(index_kids.tolist()) == set(expect)
    assert np.array_equal(index_hashes, index_kids ^ np.uint64(7))
    con.close()


def test_partition_ranges_cover_every_partition() -> None:
    for rows in (0, 1, 999_999, 1_000_001, 7_000_000, 10**12):
        ranges = duckdb_store._partition_ranges(rows)
        if ranges == ["true"]:
            continue
        # Consecutive key id ranges from 0 to 2**64 - 1, on partition boundaries.
        bounds = [tuple(int(x) for x in c.removeprefix("kid BETWEEN ").split(" AND "))
                  for c in ranges]
        assert bounds[0][0] == 0 and bounds[-1][1] == 2**64 - 1
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(bounds))
        assert all(lo % (1 << row_hashes.PARTITION_SHIFT) == 0 for lo, _ in bounds)


def test_first_fold_renames_the_change_log(tmp_path: Path) -> None:
    """A first sync (empty records, each key once, no deletes) becomes ``records`` by a
    catalog change; the tables keep the layout of a fresh file and later folds work."""
    path = tmp_path / "s.duckdb"
    con = duckdb.connect(str(path))
    migrations.prepare(con, str(path), kind="sync", identity={"sync": "s"})
    layout = {t: con.execute(f"DESCRIBE {t}").fetchall() for t in ("records", "changes")}
    st = DuckDBStorage(con, path)
    kids = np.unique(np.random.default_rng(2).integers(0, 2**64 - 1, 3000, dtype=np.uint64))
    st.commit("r1", _rows(kids[:2000], "a"), _empty_rejections(), deletes=False)
    st.commit("r1", _rows(kids[2000:], "a"), _empty_rejections(), deletes=False)
    st.compact()
    assert {t: con.execute(f"DESCRIBE {t}").fetchall() for t in layout} == layout
    assert con.execute("SELECT count(*) FROM changes").fetchall()[0][0] == 0
    got = dict(con.execute("SELECT kid, match_value FROM acknowledged").fetchall())
    assert got == {int(k): f"a{k}" for k in kids}
    assert con.execute("SELECT count(*) FROM acknowledged WHERE run_id = 'r1' AND acked_at "
                       "IS NOT NULL").fetchall()[0][0] == len(kids)
    # A second run: updates once (no window) and deletes into non-empty records.
    st.commit("r2", _rows(kids[:10], "b"), _empty_rejections(), deletes=False)
    st.commit("r2", _rows(kids[10:20], "x"), _empty_rejections(), deletes=True)
    st.compact()
    expect = {int(k): f"a{k}" for k in kids[20:]} | {int(k): f"b{k}" for k in kids[:10]}
    assert dict(con.execute("SELECT kid, match_value FROM acknowledged").fetchall()) == expect
    index_kids, _ = st.load(None)
    assert np.all(index_kids[1:] > index_kids[:-1]) and len(index_kids) == len(expect)
    con.close()


@pytest.mark.parametrize("case", ["distinct", "twice", "deleted", "too_many", "failed"])
def test_first_run_end_with_or_without_the_shortcut(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    case: str) -> None:
    """A first run whose commits are upserts of distinct keys ends without counting
    them (its own (id, hash) pairs give the cache); any other first run takes the full
    fold. Both leave the same records and a cache equal to them."""
    from conn.state.planner.sorted_state import SortedState

    path = tmp_path / "s.duckdb"
    con = duckdb.connect(str(path))
    migrations.prepare(con, str(path), kind="sync", identity={"sync": "s"})
    st = DuckDBStorage(con, path)
    st.begin_run("r1")
    shortcut: list[bool] = []
    real_compact = DuckDBStorage.compact

    def spy(self: DuckDBStorage, force: bool = False, *,
            distinct_upserts: bool = False) -> None:
        shortcut.append(distinct_upserts)
        real_compact(self, force, distinct_upserts=distinct_upserts)

    monkeypatch.setattr(DuckDBStorage, "compact", spy)
    if case == "too_many":
        monkeypatch.setattr(sorted_cache, "IN_MEMORY_KEYS", 2500)
    rng = np.random.default_rng(5)
    kids = np.unique(rng.integers(0, 2**64 - 1, 3000, dtype=np.uint64))
    expect = {int(k): f"a{k}" for k in kids}
    for part in np.array_split(kids, 3):
        st.commit("r1", _rows(part, "a"), _empty_rejections(), deletes=False)
    if case == "twice":
        st.commit("r1", _rows(kids[:10], "b"), _empty_rejections(), deletes=False)
        expect.update({int(k): f"b{k}" for k in kids[:10]})
    elif case == "deleted":
        st.commit("r1", _rows(kids[:10], "x"), _empty_rejections(), deletes=True)
        for k in kids[:10]:
            expect.pop(int(k))
    elif case == "failed":  # a commit that fails midway leaves the log in doubt
        bad = _rows(kids[:1], "z").set_column(1, "key", pa.nulls(1, pa.string()))
        with pytest.raises(StateError, match="NOT NULL"):
            st.commit("r1", bad, _empty_rejections(), deletes=False)
    st.finish()
    st.cache.wait()
    assert shortcut == [case == "distinct"]
    got = dict(con.execute("SELECT kid, match_value FROM acknowledged").fetchall())
    assert got == expect
    assert con.execute("SELECT count(*) FROM changes").fetchall()[0][0] == 0
    built = SortedState(*st.load(None))
    cached = st.cache.read(st.generation(), st.record_count())
    assert cached is not None
    for name, arr in built.parts().items():
        np.testing.assert_array_equal(cached.parts()[name], arr)
    assert np.array_equal(built.hashes, built.kids ^ np.uint64(7)) or case == "twice"
    con.close()

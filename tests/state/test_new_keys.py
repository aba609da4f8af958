"""The index of keys new in a run (duplicates across batches): vectorised, growing in
slices, released at the end of the run."""

from __future__ import annotations

import numpy as np
import pytest
from conn.state.planner import new_keys
from conn.state.planner.new_keys import NewKeyIndex


def test_key_index_add_and_find():
    ix = NewKeyIndex()
    kids = np.array([5, 9, 5, 1, 9, 7], dtype=np.uint64)
    pos, fresh = ix.add(kids)
    assert fresh.tolist() == [True, True, False, True, False, True]
    assert pos.tolist() == [0, 1, 0, 2, 1, 3]
    assert ix.find(np.array([7, 1, 2, 5], dtype=np.uint64)).tolist() == [3, 2, -1, 0]
    rng = np.random.default_rng(0)
    many = np.unique(rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64))
    for lo in range(0, len(many), 7_000):  # grows and rehashes
        ix.add(many[lo:lo + 7_000])
    assert (ix.kids[ix.find(many)] == many).all()
    _, fresh = ix.add(many[:10])
    assert not fresh.any()


@pytest.mark.parametrize("slice_size", [1, 7, 1 << 20])
def test_growth_in_slices_keeps_positions(monkeypatch: pytest.MonkeyPatch,
                                          slice_size: int) -> None:
    monkeypatch.setattr(new_keys, "_REHASH_SLICE", slice_size)
    rng = np.random.default_rng(3)
    kids = np.unique(rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64))
    rng.shuffle(kids)
    idx = NewKeyIndex()
    for part in np.array_split(kids, 13):  # many batches: the table grows several times
        _, fresh = idx.add(part)
        assert fresh.all()
    assert len(idx) == len(kids)
    assert np.array_equal(idx.find(kids), np.arange(len(kids)))
    assert np.array_equal(idx.kids, kids)
    missing = np.setdiff1d(rng.integers(0, 2**64 - 1, 500, dtype=np.uint64), kids)
    assert (idx.find(missing) == -1).all()
    again, fresh = idx.add(kids[:100])
    assert not fresh.any() and np.array_equal(again, np.arange(100))


def test_close_releases_the_run_index_and_keeps_state(tmp_path) -> None:
    """close() drops the in-memory index before compacting; what was committed stays."""
    import pyarrow as pa
    from conn.state.backends.duckdb.store import DuckDBStateStore

    store = DuckDBStateStore.open(None, tmp_path)
    keys = pa.array([f"k{i}" for i in range(1000)], pa.string())
    batch = pa.record_batch({"v": pa.array(range(1000))})
    with store.open_sync("s", "r1") as st:
        plan = st.plan(keys, batch)
        assert len(plan.inserts) == 1000
        st.commit(keys, plan.hashes, keys, pa.array([True] * 1000), [])
        assert len(st.new) == 1000
    assert len(st.new) == 0 and len(st.state) == 0
    with store.open_sync("s", "r2") as st2:
        again = st2.plan(keys, batch)
        assert again.unchanged == 1000 and len(again.inserts) == 0
    store.close()

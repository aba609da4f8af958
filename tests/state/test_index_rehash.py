"""KeyIndex growth re-inserts its entries in slices; every key must stay findable."""

from __future__ import annotations

import numpy as np
import pytest
from conn.state import index as index_mod
from conn.state.index import KeyIndex


@pytest.mark.parametrize("slice_size", [1, 7, 1 << 20])
def test_growth_in_slices_keeps_positions(monkeypatch: pytest.MonkeyPatch,
                                          slice_size: int) -> None:
    monkeypatch.setattr(index_mod, "_REHASH_SLICE", slice_size)
    rng = np.random.default_rng(3)
    kids = np.unique(rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64))
    rng.shuffle(kids)
    idx = KeyIndex()
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

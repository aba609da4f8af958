"""Regression: a lookup whose home slot lies past the last stored id's position (found by
the crash test: IndexError in SortedState.find)."""

import numpy as np
from conn.state.planner.sorted_state import SortedState


def test_lookup_of_ids_above_every_stored_id():
    rng = np.random.default_rng(1)
    stored = np.sort(rng.integers(0, 2**62, 5000, dtype=np.uint64))  # top bits all low
    state = SortedState(stored, np.arange(5000, dtype=np.uint64))
    queries = np.array([2**64 - 1, 2**63 + 5, stored[10]], dtype=np.uint64)
    assert state.find(queries).tolist() == [-1, -1, 10]


def test_every_stored_id_found_and_random_ids_absent():
    rng = np.random.default_rng(2)
    stored = np.unique(rng.integers(0, 2**64 - 1, 20000, dtype=np.uint64))
    state = SortedState(stored, np.zeros(len(stored), dtype=np.uint64))
    assert (state.find(stored) == np.arange(len(stored))).all()
    others = np.setdiff1d(rng.integers(0, 2**64 - 1, 20000, dtype=np.uint64), stored)
    assert (state.find(others) == -1).all()


def test_from_pairs_sorts_what_it_is_given():
    rng = np.random.default_rng(3)
    kids = rng.integers(0, 2**64 - 1, 3000, dtype=np.uint64)  # unsorted
    hashes = np.arange(3000, dtype=np.uint64)
    pairs = np.column_stack([kids, hashes]).ravel()
    built, streamed = SortedState(kids, hashes), SortedState.from_pairs(pairs)
    for name, arr in built.parts().items():
        assert np.array_equal(streamed.parts()[name], arr)
    assert (streamed.hashes[streamed.find(kids)] == hashes).all()

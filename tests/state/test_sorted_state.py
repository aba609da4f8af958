"""The sorted state's probing table: lookups of ids past every stored position (found by
the crash test: IndexError in SortedState.find), and one layout for the table built in
memory and the one streamed in slices."""

import numpy as np
import pytest
from conn.state.planner.sorted_state import SortedState, table_layout, table_positions


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


@pytest.mark.one_planner_path
@pytest.mark.parametrize("n", [1, 2, 1000, 5000])
@pytest.mark.parametrize("step", [1, 7, 999, 10_000])
@pytest.mark.parametrize("spread", [64, 50, 20])
def test_table_positions_in_slices_equal_the_whole(n: int, step: int, spread: int) -> None:
    """The streamed cache writer places ids slice by slice; the positions must be those of
    the table built at once, also when runs of colliding ids cross slice borders (ids
    crowded into few home slots: ``spread`` random low bits)."""
    rng = np.random.default_rng(n * step + spread)
    kids = np.unique(rng.integers(0, 2**spread - 1, n, dtype=np.uint64, endpoint=True))
    n = len(kids)
    layout = table_layout(n)
    whole_i, whole = table_positions(kids, layout.shift)
    parts, after = [], None
    for lo in range(0, n, step):
        i, pos = table_positions(kids[lo:lo + step], layout.shift, start=lo, after=after)
        assert np.array_equal(i, whole_i[lo:lo + step])
        parts.append(pos)
        after = int(pos[-1])
    assert np.array_equal(np.concatenate(parts), whole)
    assert (np.diff(whole) > 0).all() and (whole >= (kids >> layout.shift)).all()
    state = SortedState(kids, np.arange(n, dtype=np.uint64))
    assert len(state.table) == layout.size(int(whole[-1]))
    assert np.array_equal(np.flatnonzero(state.table), whole)
    assert (state.find(kids) == np.arange(n)).all()

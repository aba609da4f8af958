"""RunChanges (a streaming run's own commits, planned against by later micro-batches)
against a plain model: a dict of each key's latest change. Random commits of upserts
and deletes, folded at random points (with the log's bounds lowered, so it is compacted
and combined on the way, and the index's levels merged at once, late or only when read),
must give the model's latest change per key in ``held`` and in ``layered``, for every
key or for a chosen few."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conn.state.planner import run_changes
from conn.state.planner.run_changes import RunChanges
from conn.state.planner.sorted_state import LayeredState, SortedState
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples

#: Groups of (key id, payload hash, deleted) commits, each group folded at its end.
COMMITS = st.lists(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 10**6),
                                      st.booleans()), max_size=12), max_size=12)


def table(k: int, h: int) -> pa.Table:
    return pa.table({"kid": pa.array([k], pa.uint64()), "key": [str(k)],
                     "hash": pa.array([h], pa.uint64()), "match_value": [f"m{k}-{h}"]})


@settings(max_examples=examples(50), deadline=None)
@given(COMMITS, st.lists(st.integers(1, 45), max_size=8), st.booleans(),
       st.sampled_from([0.0, 0.5, 4.0, 1e9]))
def test_held_and_layered_give_the_latest_change_of_each_key(groups, probe, small, share):
    with pytest.MonkeyPatch.context() as mp:
        if small:
            mp.setattr(run_changes, "_MAX_CHUNKS", 2)
            mp.setattr(run_changes, "_SLACK", 2)
        mp.setattr(run_changes, "_MERGE_SHARE", share)
        rc = RunChanges()
        model: dict[int, tuple[int, bool]] = {}
        for group in groups:
            for k, h, gone in group:
                rc.add(table(k, h), "int64", deleted=gone)
                model[k] = (h, gone)
            rc.fold()
    kids = np.array(sorted(set(probe)), dtype=np.uint64)
    mine, touched = rc.held(kids)
    assert touched.tolist() == [int(k) in model for k in kids]
    got = zip(mine.column("kid").to_pylist(), mine.column("hash").to_pylist(),
              mine.column("match_value").to_pylist(), strict=True)
    assert sorted(got) == [(k, model[k][0], f"m{k}-{model[k][0]}") for k in map(int, kids)
                           if k in model and not model[k][1]]
    opened = SortedState(np.array([41, 42], np.uint64), np.array([7, 7], np.uint64))
    for chosen in (None, kids):
        state = rc.layered(opened, chosen)
        want = {k: v for k, v in model.items() if chosen is None or k in set(probe)}
        if not want:
            assert state is opened
            continue
        assert isinstance(state, LayeredState)
        assert state.upserts.kids.tolist() == sorted(k for k, (_, g) in want.items() if not g)
        ups = dict(zip(state.upserts.kids.tolist(), state.upserts.hashes.tolist(),
                       strict=True))
        assert ups == {k: h for k, (h, g) in want.items() if not g}
        assert sorted(state.gone.tolist()) == sorted(k for k, (_, g) in want.items() if g)
    assert len(rc) == len(model)


def test_a_long_run_keeps_few_index_levels():
    """Each fold adds a level and merges it into the one before once it is a quarter of that
    one's size: after 2,000 folds of new keys the index has a handful of levels, not one
    per fold, and every key is found."""
    rc = RunChanges()
    for i in range(2000):
        kids = np.arange(i * 50, (i + 1) * 50, dtype=np.uint64)
        rc.add(pa.table({"kid": kids, "key": [str(k) for k in kids],
                         "hash": kids + np.uint64(1), "match_value": ["m"] * 50}), None,
               deleted=False)
        rc.fold()
        assert len(rc._levels) <= 2 * np.log2(i + 2) + 2
    state = rc.layered(SortedState(np.empty(0, np.uint64), np.empty(0, np.uint64)),
                       np.array([0, 49_999, 100_000], np.uint64))
    assert state.upserts.kids.tolist() == [0, 49_999]
    assert state.upserts.hashes.tolist() == [1, 50_000]

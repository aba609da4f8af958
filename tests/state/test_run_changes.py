"""RunChanges (a streaming run's own commits, planned against by later micro-batches)
against a plain model: a dict of each key's latest change. Random commits of upserts
and deletes, folded at random points (with the log's bounds lowered, so it is compacted
and combined on the way), must give the model's latest change per key in ``held`` and
in ``layered``, for every key or for a chosen few."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conn.state.planner import run_changes
from conn.state.planner.run_changes import RunChanges
from conn.state.planner.sorted_state import LayeredState, SortedState
from hypothesis import given, settings
from hypothesis import strategies as st

#: Groups of (key id, payload hash, deleted) commits, each group folded at its end.
COMMITS = st.lists(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 10**6),
                                      st.booleans()), max_size=12), max_size=12)


def table(k: int, h: int) -> pa.Table:
    return pa.table({"kid": pa.array([k], pa.uint64()), "key": [str(k)],
                     "hash": pa.array([h], pa.uint64()), "match_value": [f"m{k}-{h}"]})


@settings(max_examples=25, deadline=None)
@given(COMMITS, st.lists(st.integers(1, 45), max_size=8), st.booleans())
def test_held_and_layered_give_the_latest_change_of_each_key(groups, probe, small):
    with pytest.MonkeyPatch.context() as mp:
        if small:
            mp.setattr(run_changes, "_MAX_CHUNKS", 2)
            mp.setattr(run_changes, "_SLACK", 2)
        rc = RunChanges()
        model: dict[int, tuple[int, bool]] = {}
        for group in groups:
            for k, h, gone in group:
                rc.add(table(k, h), "int64", deleted=gone)
                model[k] = (h, gone)
            rc.fold()
    assert len(rc) == len(model)
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

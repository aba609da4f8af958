"""Streaming runs against every backend (SyncState.rebase and SyncState.held): each
micro-batch is a new pass planned against what the run itself committed so far, and a
delete from the stream finds the match value acknowledged before or during the run."""

from __future__ import annotations

import pyarrow as pa

from tests.state.test_contract import rows


def commit(st, keys, plan, match_values=None):
    sent = pa.concat_arrays([plan.inserts, plan.updates])
    k = keys.take(sent)
    mv = k if match_values is None else pa.array(match_values, pa.string()).take(sent)
    st.commit(k, plan.hashes.take(sent), mv, pa.array([True] * len(k)), [])


def keys_of(keys, arr):
    return sorted(keys.take(arr).to_pylist())


def test_a_key_changes_again_in_the_same_run(backend):
    _, make = backend
    with make().open_sync("s", "r1") as st:
        st.rebase()
        keys, batch = rows([1, 2])
        p = st.plan(keys, batch)
        assert keys_of(keys, p.inserts) == ["1", "2"]
        commit(st, keys, p)
        st.rebase()
        keys, batch = rows([1, 2], version=0)
        p = st.plan(keys, batch)  # the same payload again: unchanged, not a duplicate
        assert (len(p.inserts), len(p.updates), p.unchanged, p.rejected) == (0, 0, 2, [])
        st.rebase()
        keys, batch = rows([1, 3], version=5)
        p = st.plan(keys, batch)
        assert keys_of(keys, p.inserts) == ["3"] and keys_of(keys, p.updates) == ["1"]
        first = p.previous.to_pylist()
        commit(st, keys, p)
        st.rebase()
        keys, batch = rows([1], version=9)
        p = st.plan(keys, batch)
        # Planned against the run's own last commit of key 1 (version 5), not the first.
        assert keys_of(keys, p.updates) == ["1"] and p.previous.to_pylist() != first
    # The next run sees everything the streaming run committed.
    with make().open_sync("s", "r2") as st:
        keys, batch = rows([1, 2, 3], version=5)
        p = st.plan(keys, batch)
        assert keys_of(keys, p.updates) == ["2"] and p.unchanged == 2


def test_held_finds_match_values_from_before_and_during_the_run(backend):
    _, make = backend
    with make().open_sync("s", "r1") as st:
        keys, batch = rows([1, 2])
        commit(st, keys, st.plan(keys, batch), ["a@x.org", "b@x.org"])
    with make().open_sync("s", "r2") as st:
        st.rebase()
        keys, batch = rows([3])
        commit(st, keys, st.plan(keys, batch), ["c@x.org"])
        st.rebase()
        got = {k: m for found in st.held(pa.array(["1", "3", "9"]), 10)
               for k, m in zip(found.keys.to_pylist(), found.match_values.to_pylist(),
                               strict=True)}
        assert got == {"1": "a@x.org", "3": "c@x.org"}  # 9 was never delivered
        st.commit_deletes(pa.array(["1", "3"]), pa.array([True, True]), [])
        st.rebase()
        assert list(st.held(pa.array(["1", "3"]), 10)) == []
        keys, batch = rows([1])
        p = st.plan(keys, batch)  # deleted in this run: an insert again
        assert keys_of(keys, p.inserts) == ["1"]

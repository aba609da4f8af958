"""The state store contract, for every backend."""

from __future__ import annotations

import pyarrow as pa
import pytest
from conn.errors import StateError, SyncLocked


def rows(ids, version=0, extra=None):
    keys = pa.array([str(i) for i in ids], pa.string())
    cols = {"email": [f"u{i}@x.org" for i in ids], "ltv": [float(i + version) for i in ids]}
    if extra:
        cols.update(extra)
    return keys, pa.record_batch(cols)


def idx(arr):
    return sorted(arr.to_pylist())


def ack_all(st, keys, plan, rejected=()):
    """Send inserts+updates; acknowledge all but ``rejected`` positions of the batch."""
    sent = pa.concat_arrays([plan.inserts, plan.updates])
    k = keys.take(sent)
    positions = sent.to_pylist()
    rej = [(j, "bad e-mail") for j, p in enumerate(positions) if p in rejected]
    acked = pa.array([p not in rejected for p in positions])
    st.commit(k, plan.hashes.take(sent), k, acked, rej)
    return k


def run(store, run_id, batches, rejected=(), full_resync=False):
    """One run: returns (inserts, updates, unchanged) key lists."""
    ins, upd, unch = [], [], 0
    with store.open_sync("s", run_id, full_resync=full_resync) as st:
        for keys, batch in batches:
            p = st.plan(keys, batch)
            ins += [keys[i].as_py() for i in p.inserts.to_pylist()]
            upd += [keys[i].as_py() for i in p.updates.to_pylist()]
            unch += p.unchanged
            ack_all(st, keys, p, {i for i in range(len(keys)) if keys[i].as_py() in rejected})
    return sorted(ins, key=int), sorted(upd, key=int), unch


def test_second_run_plans_nothing(backend):
    _, make = backend
    store = make()
    assert run(store, "r1", [rows(range(10)), rows(range(10, 20))])[0] == [str(i)
                                                                          for i in range(20)]
    assert run(make(), "r2", [rows(range(10)), rows(range(10, 20))]) == ([], [], 20)


def test_changed_row_planned_once(backend):
    _, make = backend
    run(make(), "r1", [rows(range(5))])
    keys, batch = rows(range(5))
    batch = batch.set_column(1, "ltv", pa.array([0.0, 1.0, 99.0, 3.0, 4.0]))
    assert run(make(), "r2", [(keys, batch)]) == ([], ["2"], 4)
    assert run(make(), "r3", [(keys, batch)]) == ([], [], 5)


def test_mapping_change_resends(backend):
    _, make = backend
    run(make(), "r1", [rows(range(3))])
    keys, batch = rows(range(3))
    renamed = batch.rename_columns(["mail", "ltv"])
    assert run(make(), "r2", [(keys, renamed)])[1] == ["0", "1", "2"]


def test_deletions_and_reinsert(backend):
    _, make = backend
    run(make(), "r1", [rows(range(6))])
    store = make()
    with store.open_sync("s", "r2") as st:
        keys, batch = rows([0, 2, 4, 5])
        st.plan(keys, batch)
        st.touch(pa.array(["1"]))  # mapper-rejected: still in the source
        got = [(k.to_pylist(), m.to_pylist()) for k, m in st.deletions(10)]
        assert got == [(["3"], ["3"])]
        st.commit_deletes(pa.array(["3"]), pa.array([True]), [])
    with make().open_sync("s", "r3") as st:
        keys, batch = rows(range(6))
        p = st.plan(keys, batch)
        assert [keys[i].as_py() for i in p.inserts.to_pylist()] == ["3"]
        assert list(st.deletions(10)) == []


def test_deletions_return_the_acknowledged_match_values(backend):
    """Match values come back exactly as acknowledged, whether a commit's match values
    are its keys (stored once by the DuckDB store), differ from them, or are null."""
    _, make = backend
    with make().open_sync("s", "r1") as st:
        for ids, mvs in (([0, 1], ["0", "1"]), ([2, 3], ["b@x.org", "3"]),
                         ([4], [None])):
            keys, batch = rows(ids)
            p = st.plan(keys, batch)
            st.commit(keys, p.hashes, pa.array(mvs, pa.string()),
                      pa.array([True] * len(ids)), [])
    with make().open_sync("s", "r2") as st:
        st.plan(*rows([]))
        got = {k: m for keys, mvs in st.deletions(10)
               for k, m in zip(keys.to_pylist(), mvs.to_pylist(), strict=True)}
    assert got == {"0": "0", "1": "1", "2": "b@x.org", "3": "3", "4": None}


def test_rejected_delete_is_kept(backend):
    _, make = backend
    run(make(), "r1", [rows(range(3))])
    store = make()
    with store.open_sync("s", "r2") as st:
        st.plan(*rows([0, 1]))
        dels = list(st.deletions(10))
        assert [k.to_pylist() for k, _ in dels] == [["2"]]
        st.commit_deletes(pa.array(["2"]), pa.array([False]), [(0, "locked record")])
    assert [(r["key"], r["op"]) for r in store.rejections("s")] == [("2", "delete")]
    with make().open_sync("s", "r3") as st:
        st.plan(*rows([0, 1]))
        assert [k.to_pylist() for k, _ in st.deletions(10)] == [["2"]]


def test_duplicate_and_null_keys(backend):
    _, make = backend
    run(make(), "r1", [rows([1, 2])])
    with make().open_sync("s", "r2") as st:
        keys = pa.array(["1", "1", None, "3", "3", "2"])
        batch = pa.record_batch({"v": [1, 2, 3, 4, 5, 6]})
        p = st.plan(keys, batch)
        assert [i for i, _ in p.rejected] == [1, 2, 4]
        reasons = dict(p.rejected)
        assert "null" in reasons[2] and "duplicate" in reasons[1] and "'3'" in reasons[4]
        assert idx(p.inserts) == [3] and idx(p.updates) == [0, 5]
        # across batches
        p2 = st.plan(pa.array(["3", "2", "4"]), pa.record_batch({"v": [1, 2, 3]}))
        assert [i for i, _ in p2.rejected] == [0, 1] and idx(p2.inserts) == [2]


def test_rejection_stored_and_retried(backend):
    _, make = backend
    store = make()
    assert run(store, "r1", [rows(range(4))], rejected={"2"})[0] == ["0", "1", "2", "3"]
    rej = store.rejections("s")
    assert [(r["key"], r["reason"], r["run_id"]) for r in rej] == [("2", "bad e-mail", "r1")]
    # unchanged source: the rejected row is planned again (insert), the rest not
    assert run(make(), "r2", [rows(range(4))], rejected={"2"}) == (["2"], [], 3)
    assert [r["run_id"] for r in make().rejections("s")] == ["r2"]
    # acknowledged at last: cleared
    assert run(make(), "r3", [rows(range(4))]) == (["2"], [], 3)
    assert make().rejections("s") == []


def test_rejected_update_retried_and_cleared_when_gone(backend):
    _, make = backend
    run(make(), "r1", [rows(range(3))])
    run(make(), "r2", [rows(range(3), version=1)], rejected={"1"})
    assert run(make(), "r3", [rows(range(3), version=1)]) == ([], ["1"], 2)
    run(make(), "r4", [rows(range(3), version=2)], rejected={"0"})
    store = make()
    assert [r["key"] for r in store.rejections("s")] == ["0"]
    with store.open_sync("s", "r5") as st:  # key 0 left the source
        st.plan(*rows([1, 2], version=2))
        st.finish()
    assert store.rejections("s") == []


def test_pending_rows_resent(backend):
    _, make = backend
    with make().open_sync("s", "r1") as st:
        keys, batch = rows(range(4))
        p = st.plan(keys, batch)
        st.commit(keys, p.hashes, keys, pa.array([True, False, True, False]), [])
    assert run(make(), "r2", [rows(range(4))]) == (["1", "3"], [], 2)


def test_full_resync(backend):
    _, make = backend
    run(make(), "r1", [rows(range(3))], rejected={"1"})
    assert run(make(), "r2", [rows(range(3))], full_resync=True) == (["1"], ["0", "2"], 0)


def test_source_state(backend):
    _, make = backend
    with make().open_sync("s", "r1") as st:
        assert st.source_state() is None
        st.save_source_state({"cursor": "2024-01-01", "n": 3})
    with make().open_sync("s", "r2") as st:
        assert st.source_state() == {"cursor": "2024-01-01", "n": 3}


def test_run_history(backend):
    _, make = backend
    store = make()
    store.record_run("s", "r1", {"status": "ok", "inserted": 3, "seconds": 1.5})
    store.record_run("t", "r2", {"status": "failed", "error": "boom"})
    runs = store.runs()
    assert [r["run_id"] for r in runs] == ["r2", "r1"]
    assert runs[1]["inserted"] == 3 and runs[1]["seconds"] == 1.5
    assert [r["run_id"] for r in store.runs("s")] == ["r1"]


def test_lock_refused(backend):
    _, make = backend
    store = make()
    with store.open_sync("s", "r1"):
        with pytest.raises(SyncLocked) as e, make().open_sync("s", "r2"):
            pass
        assert "'s'" in str(e.value)
        with make().open_sync("other", "r3"):
            pass
    with make().open_sync("s", "r4"):
        pass


def test_partitions(backend):
    kind, make = backend
    from conn.state.hashing import PARTITIONS, partition_of_keys

    keys, batch = rows(range(200))
    parts = partition_of_keys(keys).to_pylist()
    assert all(0 <= p < PARTITIONS for p in parts)
    mine = frozenset(sorted(set(parts))[:20])
    sel = pa.array([i for i, p in enumerate(parts) if p in mine], pa.int64())
    store = make()
    with store.open_sync("s", "r1", partitions=mine) as st:
        with pytest.raises(StateError, match="partitions"):
            st.plan(keys, batch)
        p = st.plan(keys.take(sel), batch.take(sel))
        assert len(p.inserts) == len(sel)
        ack_all(st, keys.take(sel), p)
    if kind != "memory":
        other = frozenset(range(PARTITIONS)) - mine
        with (store.open_sync("s", "r2", partitions=mine),
              make().open_sync("s", "r3", partitions=frozenset([min(other)])),
              pytest.raises(SyncLocked), make().open_sync("s", "r4")):
            pass
    with make().open_sync("s", "r5") as st:
        p = st.plan(keys, batch)
        assert len(p.inserts) == 200 - len(sel) and p.unchanged == len(sel)

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
        got = [(k.to_pylist(), m.to_pylist()) for k, m, _ in st.deletions(10)]
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
        got = {k: m for keys, mvs, _ in st.deletions(10)
               for k, m in zip(keys.to_pylist(), mvs.to_pylist(), strict=True)}
    assert got == {"0": "0", "1": "1", "2": "b@x.org", "3": "3", "4": None}


def test_rejected_delete_is_kept(backend):
    _, make = backend
    run(make(), "r1", [rows(range(3))])
    store = make()
    with store.open_sync("s", "r2") as st:
        st.plan(*rows([0, 1]))
        dels = list(st.deletions(10))
        assert [k.to_pylist() for k, _, _ in dels] == [["2"]]
        st.commit_deletes(pa.array(["2"]), pa.array([False]), [(0, "locked record")])
    assert [(r["key"], r["op"]) for r in store.rejections("s")] == [("2", "delete")]
    with make().open_sync("s", "r3") as st:
        st.plan(*rows([0, 1]))
        assert [k.to_pylist() for k, _, _ in st.deletions(10)] == [["2"]]


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


def test_a_changed_hash_function_needs_a_full_resync(backend, monkeypatch):
    """Stored payload hashes are DuckDB's ``hash()``: when its canary changes (a DuckDB
    release changed the function) a run is refused, unless it is a full resync, which
    re-sends every row and records the new canary."""
    from conn.state.planner import row_hashes

    kind, make = backend
    if kind == "memory":
        pytest.skip("the memory backend's state lives in one process, with one DuckDB")
    run(make(), "r1", [rows(range(4))])
    monkeypatch.setattr(row_hashes, "canary", lambda con: "another hash function")
    with pytest.raises(StateError, match=r"hash function changed.*--full-resync"):
        run(make(), "r2", [rows(range(4))])
    assert run(make(), "r3", [rows(range(4))], full_resync=True) == ([], list("0123"), 0)
    assert run(make(), "r4", [rows(range(4))]) == ([], [], 4)


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
    from conn.state import PARTITIONS, partition_of_keys

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


def _target(**change):
    from conn.state.target import SyncTarget

    base = dict(source="warehouse", source_type="duckdb", stream="customers", query=None,
                primary_key=("id",), destination="staging", destination_type="webhook",
                destination_identity={"url": "https://staging.example.com"},
                object="contacts", match_key="email",
                key_types=pa.schema([("id", pa.int64())]))
    base.update(change)
    return SyncTarget(**base)


def test_a_changed_target_is_refused_until_the_run_says_what_it_means(backend):
    from conn.state.target import TargetChanged

    _, make = backend
    store = make()
    with store.open_sync("s", "r1", target=_target()) as st:
        p = st.plan(*rows(range(3)))
        ack_all(st, rows(range(3))[0], p)
    moved = _target(destination="prod", destination_identity={"url": "https://prod"})
    with pytest.raises(TargetChanged) as err, make().open_sync("s", "r2", target=moved):
        pass
    msg = str(err.value)
    assert "destination: 'staging' -> 'prod'" in msg and "--new-target" in msg
    assert "--same-target" in msg
    # Unchanged identity, or tuning that is not part of it: no refusal.
    with make().open_sync("s", "r3", target=_target()) as st:
        assert st.plan(*rows(range(3))).unchanged == 3
    # --same-target keeps the state under the new identity.
    with make().open_sync("s", "r4", target=moved, on_target_change="same") as st:
        assert st.plan(*rows(range(3))).unchanged == 3
    with make().open_sync("s", "r5", target=moved) as st:  # recorded: no refusal now
        st.plan(*rows(range(3)))
    # --new-target starts from scratch: every row is an insert.
    elsewhere = _target(object="leads")
    with make().open_sync("s", "r6", target=elsewhere, on_target_change="new") as st:
        assert len(st.plan(*rows(range(3))).inserts) == 3
        assert list(st.deletions(10)) == []
    assert store.rejections("s") == []


def test_each_part_of_the_identity_is_compared(backend):
    from conn.state.target import TargetChanged

    _, make = backend
    with make().open_sync("s", "r1", target=_target()) as st:
        p = st.plan(*rows(range(2)))
        ack_all(st, rows(range(2))[0], p)
    for change in ({"object": "leads"}, {"match_key": "id"}, {"stream": "people"},
                   {"query": "SELECT 1"}, {"primary_key": ("id", "x")},
                   {"destination_identity": {"url": "https://other"}}):
        with pytest.raises(TargetChanged), make().open_sync("s", "r2",
                                                            target=_target(**change)):
            pass
    # Whitespace of a query is not a change; key types are not part of the identity.
    q = _target(stream=None, query="SELECT *\n  FROM t")
    with make().open_sync("s", "r3", target=q, on_target_change="same"):
        pass
    with make().open_sync("s", "r4", target=_target(stream=None, query="SELECT * FROM t",
                                                    key_types=None)):
        pass
    assert make().stored_target("s") is not None


def test_match_values_come_back_with_their_type(backend):
    """A delete sends the match value as the destination received it: 2, not "2"."""
    _, make = backend
    with make().open_sync("s", "r1") as st:
        keys, batch = rows([1, 2, 3])
        p = st.plan(keys, batch)
        st.commit(keys, p.hashes, pa.array([10, 20, 30], pa.int64()),
                  pa.array([True] * 3), [])
    with make().open_sync("s", "r2") as st:
        st.plan(*rows([1]))
        got = list(st.deletions(10))
    assert len(got) == 1 and got[0].match_values.type == pa.int64()
    assert sorted(got[0].match_values.to_pylist()) == [20, 30]
    assert got[0].hashes.type == pa.uint64() and got[0].hashes.null_count == 0


def test_rejections_keep_their_first_time_and_count_attempts(backend):
    _, make = backend
    store = make()
    for run_id in ("r1", "r2", "r3"):
        with make().open_sync("s", run_id) as st:
            keys, batch = rows([1, 2])
            p = st.plan(keys, batch)
            ack_all(st, keys, p, rejected={1})
    (rej,) = store.rejections("s")
    assert rej["key"] == "2" and rej["attempts"] == 3 and rej["run_id"] == "r3"
    assert rej["since"] <= rej["at"]


def test_rows_without_a_key_are_rejected_listed_and_replaced(backend):
    from conn.state.planner import REASON_NULL

    _, make = backend
    store = make()
    for run_id in ("r1", "r2"):
        with make().open_sync("s", run_id) as st:
            keys = pa.array(["1", None], pa.string())
            p = st.plan(keys, rows([1, 2])[1])
            assert [r for _, r in p.rejected] == [REASON_NULL]
            st.commit(keys.take(pa.array([1])), pa.nulls(1, pa.uint64()),
                      pa.nulls(1, pa.string()), pa.array([False]), p.rejected[:1] and
                      [(0, REASON_NULL)])
            ack_all(st, keys, p)
            st.finish()
    (rej,) = store.rejections("s")
    assert rej["key"] is None and rej["attempts"] == 2
    with make().open_sync("s", "r3") as st:  # the row got a key: nothing left to list
        st.plan(*rows([1, 2]))
        st.finish()
    assert store.rejections("s") == []


def test_delivered_gives_what_the_destination_acknowledged_with_its_type(backend):
    from conn.state.typed_text import value_of

    _, make = backend
    store = make()
    with store.open_sync("s", "r1") as st:
        keys, batch = rows([1, 2, 3])
        p = st.plan(keys, batch)
        st.commit(keys, p.hashes, pa.array([10, 20, 30], pa.int64()),
                  pa.array([True, True, False]), [(2, "refused")])
    got = {d["key"]: d for d in make().delivered("s", ["1", "3", "9"])}
    assert set(got) == {"1"}
    d = got["1"]
    assert value_of(d["match_value"], d["match_type"]) == 10
    assert d["run_id"] == "r1" and d["acked_at"].endswith("Z")
    assert make().delivered("s", []) == [] and make().delivered("nosuch", ["1"]) == []


def test_a_key_rejected_twice_in_a_run_has_one_entry_with_both_reasons(backend):
    """Found by the differential test: the mapper and the planner (or a write and a
    delete) rejecting one key in one run listed it twice, one entry restarting its
    attempts every run."""
    _, make = backend
    store = make()
    for run_id in ("r1", "r2", "r3"):
        with make().open_sync("s", run_id) as st:
            keys = pa.array(["10", "10", "11"], pa.string())
            st.commit(keys.slice(0, 1), pa.nulls(1, pa.uint64()), pa.nulls(1, pa.string()),
                      pa.array([False]), [(0, "unknown record")])
            st.commit(keys, pa.nulls(3, pa.uint64()), pa.nulls(3, pa.string()),
                      pa.array([False] * 3), [(0, "duplicate"), (1, "duplicate"),
                                               (2, "bad e-mail")])
    got = {r["key"]: r for r in store.rejections("s")}
    assert set(got) == {"10", "11"} and len(store.rejections("s")) == 2
    assert got["10"]["reason"] == "unknown record; duplicate"
    assert got["10"]["attempts"] == 3 and got["11"]["attempts"] == 3


def test_delivered_says_since_when_a_key_is_delivered(backend):
    """``first_acked_at`` is the first acknowledged delivery: an update moves
    ``acked_at`` only; a key deleted and delivered again starts anew (times in whole
    seconds, hence the pauses)."""
    import time

    _, make = backend
    run(make(), "r1", [rows([1, 2])])
    (first,) = make().delivered("s", ["1"])
    assert first["first_acked_at"] == first["acked_at"]
    time.sleep(1.1)
    assert run(make(), "r2", [rows([1, 2], version=1)])[1] == ["1", "2"]
    store = make()
    with store.open_sync("s", "r2b") as st:  # committed, not yet folded: read too
        keys, batch = rows([1], version=2)
        ack_all(st, keys, st.plan(keys, batch))
        (during,) = store.delivered("s", ["1"])
    (later,) = make().delivered("s", ["1"])
    assert later["first_acked_at"] == first["acked_at"] < later["acked_at"]
    assert during["first_acked_at"] == first["acked_at"]
    with make().open_sync("s", "r3") as st:
        keys, batch = rows([2], version=1)
        st.plan(keys, batch)
        assert [k.to_pylist() for k, _, _ in st.deletions(10)] == [["1"]]
        st.commit_deletes(pa.array(["1"]), pa.array([True]), [])
    assert make().delivered("s", ["1"]) == []
    time.sleep(1.1)
    run(make(), "r4", [rows([1])])
    (again,) = make().delivered("s", ["1"])
    assert again["first_acked_at"] == again["acked_at"] > later["acked_at"]
    (two,) = make().delivered("s", ["2"])
    assert two["first_acked_at"] == first["acked_at"]



def test_rejections_keep_the_excerpt_of_the_exchange_that_rejected_them(backend):
    """The vendor exchange behind a rejected row (JSON text, conn.http.exchange) is kept
    with it and listed; a key rejected twice in a run keeps the first excerpt it got; a
    rejection without one (conn's own, e.g. a duplicate key) lists None; a new rejection
    of the key in a later run replaces it."""
    _, make = backend
    store = make()
    first = '{"method": "POST", "path": "/v1/contacts", "status": 400}'
    with make().open_sync("s", "r1") as st:
        keys = pa.array(["10", "10", "11"], pa.string())
        st.commit(keys, pa.nulls(3, pa.uint64()), pa.nulls(3, pa.string()),
                  pa.array([False] * 3),
                  [(0, "duplicate"), (1, "bad e-mail"), (2, "locked")], {1: first})
        st.commit(keys.slice(0, 1), pa.nulls(1, pa.uint64()), pa.nulls(1, pa.string()),
                  pa.array([False]), [(0, "still bad")], {0: '{"status": 422}'})
    got = {r["key"]: r for r in store.rejections("s")}
    assert set(got) == {"10", "11"}
    assert got["10"]["excerpt"] == first and got["11"]["excerpt"] is None
    with make().open_sync("s", "r2") as st:
        st.commit(pa.array(["11"]), pa.nulls(1, pa.uint64()), pa.nulls(1, pa.string()),
                  pa.array([False]), [(0, "locked")], {0: '{"status": 409}'})
    got = {r["key"]: r for r in store.rejections("s")}
    assert got["11"]["excerpt"] == '{"status": 409}' and got["11"]["attempts"] == 2

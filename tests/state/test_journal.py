"""The DuckDB store's commit journal (docs/realtime.md, "Delivery guarantee and
restarts"): during a streaming run every commit that returned survives a kill -9, with
the last bookmark saved, whether or not it was folded into the file yet; a torn last
frame is dropped; a journal folded twice stores nothing twice; and a reader opening the
file after a crash sees the journal's commits."""

from __future__ import annotations

import errno
import json
import random
import signal
import subprocess
import sys
import textwrap
import uuid

import duckdb
import pyarrow as pa
import pytest
from conn.errors import StateError
from conn.state.backends.duckdb import journal
from conn.state.backends.duckdb.store import DuckDBStateStore

CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import pyarrow as pa
    from conn.state.backends.duckdb import journal
    from conn.state.backends.duckdb.store import DuckDBStateStore
    root, plan_text, fold_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    journal.FOLD_ROWS = fold_rows
    passes, kill_after = json.loads(plan_text)
    store = DuckDBStateStore.open(root, None)
    done = 0
    with store.open_sync("s", "following") as st:
        for n, rows in enumerate(passes):
            st.rebase()  # a streaming pass (the journal is on from the first)
            keys = pa.array([k for k, _ in rows])
            p = st.plan(keys, pa.record_batch({"v": [v for _, v in rows]}))
            idx = pa.concat_arrays([p.inserts, p.updates])
            k = keys.take(idx)
            st.commit(k, p.hashes.take(idx), k, pa.array([True] * len(k)), [])
            st.save_source_state({"pass": n})
            print(n, flush=True)  # this pass's commit and bookmark returned
            if n == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
""")


def _passes(rng: random.Random, n: int) -> list[list[tuple[str, int]]]:
    out = []
    for _ in range(n):
        keys = rng.sample(range(60), rng.randint(1, 25))
        out.append([(str(k), rng.randint(0, 3)) for k in keys])
    return out


def _kill(root, passes, kill_after, fold_rows) -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD, str(root),
                           json.dumps([passes, kill_after]), str(fold_rows)],
                          stdout=subprocess.PIPE, text=True) as proc:
        out = proc.stdout.read() if proc.stdout else ""
        assert proc.wait(60) == -signal.SIGKILL, out
    assert out.split()[-1] == str(kill_after)


def _expected(passes, kill_after) -> dict[str, int]:
    """The model: each key's value as of its last pass up to the kill."""
    held: dict[str, int] = {}
    for rows in passes[:kill_after + 1]:
        held.update(rows)
    return held


def _check(store, held: dict[str, int], bookmark: int) -> None:
    keys = sorted(held, key=int)
    with store.open_sync("s", "after") as st:
        assert st.source_state() == {"pass": bookmark}
        everything = [str(k) for k in range(60)]
        values = [held.get(k, -1) for k in everything]
        p = st.plan(pa.array(everything), pa.record_batch({"v": values}))
        unchanged = sorted(set(everything) - set(pa.array(everything).take(
            pa.concat_arrays([p.inserts, p.updates])).to_pylist()), key=int)
    assert unchanged == keys


@pytest.mark.slow
@pytest.mark.parametrize("fold_rows", [10**9, 20])  # folded at the end only / often
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_commit_that_returned_survives_a_kill(tmp_path, seed, fold_rows):
    rng = random.Random(seed * 100 + fold_rows % 7)
    passes = _passes(rng, rng.randint(2, 12))
    kill_after = rng.randrange(len(passes))
    root = tmp_path / "st"
    _kill(root, passes, kill_after, fold_rows)
    store = DuckDBStateStore.open(str(root), None)
    _check(store, _expected(passes, kill_after), kill_after)
    assert not journal.pending(store.sync_path("s"))  # folded by the open


@pytest.mark.slow
def test_a_torn_last_frame_is_dropped_and_a_reader_sees_the_rest(tmp_path):
    rng = random.Random(9)
    passes = _passes(rng, 6)
    root = tmp_path / "st"
    _kill(root, passes, 4, 10**9)
    store = DuckDBStateStore.open(str(root), None)
    path = journal.path_of(store.sync_path("s"))
    entries, length = journal.read(path)
    assert entries and length == path.stat().st_size  # nothing folded before the kill
    frame = journal.Entry({"kind": "source", "run_id": "x", "value": "{}", "at": 0.0})
    with path.open("ab") as f:
        f.write(frame.encode()[:-3])  # a frame whose write the kill cut short
    held = _expected(passes, 4)
    # A reader (conn explain's question) first: it folds what the crash left.
    delivered = store.delivered("s", sorted(held))
    assert sorted(r["key"] for r in delivered) == sorted(held)
    _check(store, held, 4)


def test_a_journal_folded_twice_stores_nothing_twice(tmp_path):
    """A crash between a fold's transaction and the journal's truncation."""
    store = DuckDBStateStore.open(str(tmp_path / "st"), None)
    keys = pa.array([str(i) for i in range(10)])
    with store.open_sync("s", uuid.uuid4().hex) as st:
        st.rebase()
        p = st.plan(keys, pa.record_batch({"v": list(range(10))}))
        st.commit(keys, p.hashes, keys, pa.array([True] * 10), [])
        st.save_source_state({"at": 1})
        path = journal.path_of(store.sync_path("s"))
        left = path.read_bytes()
        assert left  # journaled, not folded yet
    path.write_bytes(left)  # the end of the run folded it; the copy is folded again
    with store.open_sync("s", "after") as st:
        assert st.source_state() == {"at": 1}
        p = st.plan(keys, pa.record_batch({"v": list(range(10))}))
        assert p.unchanged == 10
    with duckdb.connect(str(store.sync_path("s")), read_only=True) as con:
        seqs = con.execute("SELECT seq FROM commits").fetchall()
        assert len(seqs) == len(set(seqs)) == 1
        assert con.execute("SELECT count(*) FROM records").fetchall()[0][0] == 10


def test_batch_runs_commit_to_the_file_directly(tmp_path):
    store = DuckDBStateStore.open(str(tmp_path / "st"), None)
    keys = pa.array(["a", "b"])
    with store.open_sync("s", uuid.uuid4().hex) as st:
        p = st.plan(keys, pa.record_batch({"v": [1, 2]}))
        st.commit(keys, p.hashes, keys, pa.array([True, True]), [])
        assert not journal.pending(store.sync_path("s"))


def test_a_journaled_commit_clears_earlier_runs_rejections_of_its_keys(tmp_path):
    """docs/sync-modes.md: a rejection is cleared when the key is acknowledged later."""
    store = DuckDBStateStore.open(str(tmp_path / "st"), None)
    keys = pa.array(["a", "b", "c"])
    with store.open_sync("s", "first") as st:
        p = st.plan(keys, pa.record_batch({"v": [1, 2, 3]}))
        st.commit(keys, p.hashes, keys, pa.array([False, False, True]),
                  [(0, "bad a"), (1, "bad b")])
    assert sorted(r["key"] for r in store.rejections("s")) == ["a", "b"]
    with store.open_sync("s", "following") as st:
        st.rebase()
        p = st.plan(keys.slice(0, 1), pa.record_batch({"v": [1]}))
        st.commit(keys.slice(0, 1), p.hashes, keys.slice(0, 1), pa.array([True]), [])
        assert journal.pending(store.sync_path("s"))  # journaled, not yet folded
    assert [r["key"] for r in store.rejections("s")] == ["b"]


def test_a_failed_append_is_a_state_error_naming_the_journal(tmp_path, monkeypatch):
    store = DuckDBStateStore.open(str(tmp_path / "st"), None)
    keys = pa.array(["a"])

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with store.open_sync("s", uuid.uuid4().hex) as st:
        st.rebase()
        p = st.plan(keys, pa.record_batch({"v": [1]}))
        monkeypatch.setattr(journal.os, "write", full)
        with pytest.raises(StateError, match=r"state journal .*s\.duckdb\.journal: .*No space"):
            st.commit(keys, p.hashes, keys, pa.array([True]), [])
        monkeypatch.undo()
    with store.open_sync("s", "after") as st:  # the commit did not happen
        assert len(st.plan(keys, pa.record_batch({"v": [1]})).inserts) == 1

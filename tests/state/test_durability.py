"""Embedded (DuckDB) store: file checks, migration, locks and crashes (kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from conn.errors import StateError, SyncLocked
from conn.state.backends.duckdb import migrations
from conn.state.backends.duckdb.store import DuckDBStateStore
from conn.state.planner import row_hashes


def batch(ids, version=0):
    keys = pa.array([str(i) for i in ids])
    return keys, pa.record_batch({"v": [i + version for i in ids]})


def counts(store, ids, sync="s", version=0, **kw):
    with store.open_sync(sync, "check", **kw) as st:
        p = st.plan(*batch(ids, version))
        return len(p.inserts), len(p.updates), p.unchanged


def seed(store, ids, sync="s"):
    with store.open_sync(sync, "seed") as st:
        keys, b = batch(ids)
        p = st.plan(keys, b)
        st.commit(keys, p.hashes, keys, pa.array([True] * len(keys)), [])


@pytest.fixture
def store(tmp_path):
    return DuckDBStateStore.open(None, tmp_path)


def test_state_lives_under_dot_conn(store, tmp_path):
    seed(store, range(3))
    assert (tmp_path / ".conn" / "state" / "s.duckdb").exists()
    assert (tmp_path / ".conn" / "locks" / "s.lock").exists()


def test_corrupted_file_is_an_error_and_left_alone(store):
    path = store.sync_path("s")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StateError, match="corrupted or not a DuckDB file"):
        counts(store, range(3))
    assert path.read_bytes() == b"garbage" * 1000


def test_foreign_duckdb_file(store):
    path = store.sync_path("s")
    path.parent.mkdir(parents=True)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE customers (id INT)")
    with pytest.raises(StateError, match="not a conn state file"):
        counts(store, range(3))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("app_id", "someone-else", "another application"),
    ("format_version", "99", "newer conn"),
    ("sync", "other", "copied or renamed"),
])
def test_bad_meta(store, key, value, message):
    seed(store, range(3))
    with duckdb.connect(str(store.sync_path("s"))) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = ?", [value, key])
    with pytest.raises(StateError, match=message):
        counts(store, range(3))


def hashed(ids, version=0):
    """``(kid, key, hash, partition)`` of :func:`batch` rows, as this DuckDB hashes them."""
    keys, b = batch(ids, version)
    with duckdb.connect() as hc:
        kids, hashes = row_hashes.hash_batch(hc, keys, b)
    return pa.table({"kid": pa.array(kids, pa.uint64()), "key": keys,
                     "hash": pa.array(hashes, pa.uint64()),
                     "partition": pa.array(row_hashes.partitions_of(kids), pa.uint16())})


def old_state_file(store, version, tables, **data):
    """A sync state file of an older ``version`` with ``tables`` (DDL); ``data`` Arrow
    tables are registered under their names. Returns an open connection to fill it."""
    path = store.sync_path("s")
    path.parent.mkdir(parents=True)
    with duckdb.connect() as hc:
        canary = row_hashes.canary(hc)
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute(tables)
    migrations.write_meta(con, {"app_id": migrations.APP_ID, "format_version": version,
                                "kind": "sync", "sync": "s", "hash_canary": canary})
    for name, table in data.items():
        con.register(name, table)
    return con


def test_migration_from_format_1(store):
    path = store.sync_path("s")
    with old_state_file(store, 1, migrations.SYNC_TABLES_V1, old=hashed(range(5))) as con:
        con.execute("INSERT INTO records SELECT kid, key, hash, key, 'r0', now() FROM old")
        con.execute("INSERT INTO rejections SELECT kid, key, 'bad', 'write', 'r0', now() "
                    "FROM old LIMIT 1")
    assert counts(store, range(6)) == (1, 0, 5)
    with duckdb.connect(str(path)) as con:
        meta = migrations.read_meta(con)
        assert meta["format_version"] == str(migrations.FORMAT_VERSION)
        parts = con.execute("SELECT DISTINCT partition IS NULL FROM rejections").fetchall()
        assert parts == [(False,)]
        got = dict(con.execute("SELECT key, match_value FROM acknowledged").fetchall())
        assert got == {str(i): str(i) for i in range(5)}
    assert [r["reason"] for r in store.rejections("s")] == ["bad"]


def test_migration_from_format_2_keeps_records_and_the_unfolded_log(store):
    """A format-2 file with folded records and, from a run that crashed, changes not yet
    folded (an update, a delete, an insert): after the migration the state is what the
    fold would have given, and the sorted index still plans correctly."""
    path = store.sync_path("s")
    with old_state_file(store, 2, migrations.SYNC_TABLES_V2, old=hashed(range(5)),
                        log=hashed([0, 9], version=1)) as con:
        con.execute("INSERT INTO records SELECT kid, key, hash, 'mv' || key, partition, "
                    "'r0', now() FROM old")
        con.execute("INSERT INTO kid_index SELECT kid, hash, partition FROM old ORDER BY kid")
        # The crashed run: seq 1 upserts keys 0 and 9, seq 2 deletes key 4.
        con.execute("INSERT INTO changes SELECT 1, 1, kid, key, hash, 'new' || key, "
                    "partition, 'r1', now() FROM log")
        con.execute("INSERT INTO changes SELECT 2, 2, kid, key, NULL, NULL, partition, "
                    "'r1', now() FROM old WHERE key = '4'")
    # Keys 0 (changed) and 9 (new) are as the crashed run acknowledged them; 1-3 are
    # unchanged; 4 was deleted, so it is new again.
    assert counts(store, [0, 9], version=1) == (0, 0, 2)
    assert counts(store, [1, 2, 3, 4]) == (1, 0, 3)
    with duckdb.connect(str(path)) as con:
        assert migrations.read_meta(con)["format_version"] == str(migrations.FORMAT_VERSION)
        got = dict(con.execute("SELECT key, match_value FROM acknowledged").fetchall())
        assert got == {"0": "new0", "1": "mv1", "2": "mv2", "3": "mv3", "9": "new9"}
        assert con.execute("SELECT count(*) FROM changes").fetchall()[0][0] == 0


def test_hash_function_change_needs_full_resync(store):
    seed(store, range(4))
    with duckdb.connect(str(store.sync_path("s"))) as con:
        con.execute("UPDATE meta SET value = 'different' WHERE key = 'hash_canary'")
        con.execute("UPDATE records SET kid = kid + 1")  # as if hash() had changed
    with pytest.raises(StateError, match="full-resync"):
        counts(store, range(4))
    # the full resync re-keys from the stored keys: existing rows are updates, not inserts
    assert counts(store, range(4), full_resync=True) == (0, 4, 0)


CHILD = textwrap.dedent("""
    import os, signal, sys
    import pyarrow as pa
    from conn.state.backends.duckdb.store import DuckDBStateStore
    from conn.state.backends.postgres import PostgresStateStore
    url, mode = sys.argv[1], sys.argv[2]
    if url.startswith("postgresql"):
        store = PostgresStateStore.open(url, None)
    else:
        store = DuckDBStateStore.open(url, None)
    with store.open_sync("s", "crashing") as st:
        if mode == "hold":
            print("locked", flush=True)
            sys.stdin.readline()
        for b in range(5):
            ids = list(range(b * 10, b * 10 + 10))
            keys = pa.array([str(i) for i in ids])
            p = st.plan(keys, pa.record_batch({"v": ids}))
            if b == 3:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-run, before commit
            st.commit(keys, p.hashes, keys, pa.array([True] * 10), [(0, "x")][:0])
""")


def _child(url: str, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, url, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _urls(tmp_path: Path, pg_url: str | None) -> list:
    out = [str(tmp_path / "st")]
    if pg_url:
        out.append(f"{pg_url}?schema=conn_kill_{os.getpid()}")
    return out


def _store(url):
    if url.startswith("postgresql"):
        from conn.state.backends.postgres import PostgresStateStore

        return PostgresStateStore.open(url, None)
    return DuckDBStateStore.open(url, None)


def _drop(url):
    if url.startswith("postgresql"):
        import psycopg

        base, schema = url.split("?schema=")
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.slow
def test_kill_9_mid_run_loses_nothing(tmp_path, pg_url):
    for url in _urls(tmp_path, pg_url):
        try:
            with _child(url, "run") as proc:  # closes the pipes and reaps the child
                assert proc.wait(60) == -signal.SIGKILL
            store = _store(url)
            # batches 0-2 were committed: 30 unchanged; 20 rows to (re-)send
            with store.open_sync("s", "after") as st:
                ids = list(range(50))
                p = st.plan(pa.array([str(i) for i in ids]), pa.record_batch({"v": ids}))
                assert (len(p.inserts), len(p.updates), p.unchanged) == (20, 0, 30), url
        finally:
            _drop(url)


@pytest.mark.slow
def test_lock_held_by_live_process_then_taken_over_after_kill(tmp_path, pg_url):
    for url in _urls(tmp_path, pg_url):
        try:
            # The block closes the pipes and reaps the child, also when an assert fails.
            with _child(url, "hold") as proc:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
                store = _store(url)
                with pytest.raises(SyncLocked) as e, store.open_sync("s", "second"):
                    pass
                msg = str(e.value)
                assert "'s'" in msg and f"pid {proc.pid}" in msg and "crashing" in msg, msg
                proc.kill()  # kill -9: the stale lock must be taken over
                proc.communicate(timeout=30)
            for _ in range(50):  # the server notices a dead client within moments
                try:
                    with store.open_sync("s", "third"):
                        break
                except SyncLocked:
                    import time

                    time.sleep(0.1)
            else:
                pytest.fail(f"stale lock not taken over ({url})")
        finally:
            _drop(url)


def test_rejections_readable_while_another_process_runs(tmp_path):
    url = str(tmp_path / "st")
    store = DuckDBStateStore.open(url, None)
    with store.open_sync("s", "r1") as st:
        keys, b = batch([1, 2])
        p = st.plan(keys, b)
        st.commit(keys, p.hashes, keys, pa.array([True, False]), [(1, "no")])
        assert [r["key"] for r in store.rejections("s")] == ["2"]
    assert [r["reason"] for r in store.rejections("s")] == ["no"]
    assert store.rejections("unknown") == []


def test_run_history_from_an_older_format_keeps_working(store):
    """Regression: the run-history file carries the state format number; a format-2
    ``runs.duckdb`` made every later run fail to record ('no migration')."""
    path = store.root / "state" / "runs.duckdb"
    path.parent.mkdir(parents=True)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute(migrations.RUNS_TABLES)
        migrations.write_meta(con, {"app_id": migrations.APP_ID, "format_version": 2,
                                    "kind": "runs"})
    store.record_run("s", "r1", {"status": "ok", "rows_read": 3, "inserted": 3})
    assert [r["run_id"] for r in store.runs("s")] == ["r1"]
    with duckdb.connect(str(path)) as con:
        assert migrations.read_meta(con)["format_version"] == str(migrations.FORMAT_VERSION)


def test_rejections_of_an_older_format_are_listed_without_migrating(store):
    """`conn rejected` after an upgrade, before any sync: it reads, it does not migrate."""
    with old_state_file(store, 1, migrations.SYNC_TABLES_V1, old=hashed(range(2))) as con:
        con.execute("INSERT INTO rejections SELECT kid, key, 'bad e-mail', 'write', 'r0', "
                    "now() FROM old WHERE key = '1'")
    assert [(r["key"], r["reason"]) for r in store.rejections("s")] == [("1", "bad e-mail")]
    with duckdb.connect(str(store.sync_path("s"))) as con:
        assert migrations.read_meta(con)["format_version"] == "1"


def test_run_history_is_attached_briefly_and_survives_errors_and_threads(store):
    """The history file is attached to the shared in-memory DuckDB for each record: it is
    detached after an error inside, recorded from several threads at once, and left
    free for another process (a plain connection) after every record."""
    import threading

    from conn.state.planner import row_hashes

    with pytest.raises(RuntimeError), store._runs_db():
        raise RuntimeError("boom")
    errors: list[BaseException] = []

    def record(i: int) -> None:
        try:
            store.record_run("s", f"r{i}", {"status": "ok", "inserted": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r["run_id"] for r in store.runs("s")) == [f"r{i}" for i in range(8)]
    con = row_hashes.connect()
    try:  # nothing is left attached
        assert [r[0] for r in con.execute("SELECT database_name FROM duckdb_databases() "
                                          "WHERE NOT internal").fetchall()] == ["memory"]
    finally:
        con.close()
    with duckdb.connect(str(store.root / "state" / "runs.duckdb")) as other:
        assert other.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 8


def test_a_format_4_file_without_first_acked_is_read_then_completed(store):
    """Files written before ``first_acked`` existed: read-only reads fall back to the
    record's own commit; the next writable open adds the table and keeps it."""
    seed(store, range(3))
    path = store.sync_path("s")
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE first_acked")
    (d,) = store.delivered("s", ["1"])
    assert d["first_acked_at"] == d["acked_at"]
    assert counts(store, [1], version=1) == (0, 1, 0)
    with duckdb.connect(str(path)) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert "first_acked" in tables


def test_migration_from_format_5_adds_the_excerpt_of_rejections(store):
    """Format 6: rejections gain ``excerpt``; the rows of a format-5 file keep theirs
    (listed with none) and new rejections store one."""
    with old_state_file(store, 5, migrations.SYNC_TABLES, old=hashed(range(2))) as con:
        con.execute("ALTER TABLE rejections DROP COLUMN excerpt")
        con.execute("INSERT INTO rejections SELECT kid, key, partition, 'bad e-mail', "
                    "'write', 'r0', now(), now(), 1 FROM old WHERE key = '1'")
    assert [(r["key"], r["excerpt"]) for r in store.rejections("s")] == [("1", None)]
    with store.open_sync("s", "r1") as st:
        st.commit(pa.array(["0"]), pa.nulls(1, pa.uint64()), pa.nulls(1, pa.string()),
                  pa.array([False]), [(0, "locked")], {0: '{"status": 423}'})
    got = {r["key"]: r["excerpt"] for r in store.rejections("s")}
    assert got == {"0": '{"status": 423}', "1": None}
    with duckdb.connect(str(store.sync_path("s"))) as con:
        assert migrations.read_meta(con)["format_version"] == str(migrations.FORMAT_VERSION)

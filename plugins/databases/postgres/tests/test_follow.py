"""Following PostgreSQL tables through logical replication (README "Streaming"), against
the real local server: types, the runtime's acknowledgements, ``conn sync --follow``
into a files and a webhook destination, consent withdrawals, SIGKILL in mid-stream.

Every test uses its own table, publication and slot, and drops the slot at the end (a
slot left behind keeps WAL forever). Tests skip, saying why, when the server is not
reachable or its ``wal_level`` is not ``logical``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conn.errors import CheckFailed
from conn.streaming import OPERATION
from conn.testing.harness import read_all
from conn_postgres.replication import Admin, Settings
from conn_postgres.source import PostgresSource

from .test_postgres import WIDE, WIDE_ROWS

pytestmark = pytest.mark.services
CONN = str(Path(sys.executable).with_name("conn"))


def eventually(check: Callable[[], Any], timeout: float = 60.0, what: Any = "") -> Any:
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


def source(pg_url: str, table: str, slot: str, **replication: Any) -> PostgresSource:
    return PostgresSource({"url": pg_url, "tables": [table],
                           "replication": {"slot": slot, **replication}})


def collect(gen: Iterator, rows: int, timeout: float = 20.0) -> list:
    """ChangeBatches from ``gen`` until they hold ``rows`` changes."""
    out, got, end = [], 0, time.monotonic() + timeout
    while got < rows:
        assert time.monotonic() < end, f"only {got} of {rows} changes arrived"
        batch = next(gen)
        if batch.rows:
            out.append(batch)
            got += batch.rows
    return out


def test_changes_carry_the_types_a_batch_read_gives(pg_url, sql, names):
    """Each column of a followed change has the Arrow type and value of the same row
    read in batch (one conversion path per type: numbers, decimals, text, bytea, uuid,
    json, dates, times, timestamps, arrays, intervals)."""
    t, slot = names("t"), names("s")
    sql(WIDE.format(t=t))
    src = source(pg_url, t, slot)
    stream = src.stream(t)
    gen = src.changes(stream, None, wait=0.1)
    next(gen)  # the slot exists from here on
    sql(WIDE_ROWS.format(t=t))
    batches = collect(gen, 3)
    gen.close()
    changes = batches[0].changes
    assert changes.schema.remove(changes.schema.get_field_index(OPERATION)) == stream.schema
    read = read_all(src, t)[0].sort_by("id")
    assert changes.column(OPERATION).to_pylist() == ["insert"] * 3
    for name in stream.schema.names:
        # (as text: NaN equals itself there)
        assert str(changes.column(name).to_pylist()) == str(read.column(name).to_pylist())
    src.close()


def test_positions_advance_and_a_restart_redelivers_only_what_was_not_acknowledged(
        pg_url, sql, names):
    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, v text)')
    src = source(pg_url, t, slot, status_interval=1)
    stream = src.stream(t)
    gen = src.changes(stream, None, wait=0.1)
    next(gen)
    sql(f"INSERT INTO \"{t}\" VALUES (1, 'a')")
    first = collect(gen, 1)[-1].position
    src.acknowledge(first)
    sql(f"INSERT INTO \"{t}\" VALUES (2, 'b')")
    second = collect(gen, 1)[-1].position
    assert src.position_key(second) > src.position_key(first)
    gen.close()  # the second change is not acknowledged
    src.close()
    # From the slot's own position (nothing stored): the unacknowledged change comes back.
    src = source(pg_url, t, slot)
    gen = src.changes(src.stream(t), None, wait=0.1)
    again = collect(gen, 1)
    assert again[0].changes.column("id").to_pylist() == [2]
    gen.close()
    src.close()
    # From the position conn stored after the second change: nothing comes back.
    src = source(pg_url, t, slot)
    gen = src.changes(src.stream(t), json.loads(json.dumps(second)), wait=0.1)
    sql(f"INSERT INTO \"{t}\" VALUES (3, 'c')")
    assert collect(gen, 1)[0].changes.column("id").to_pylist() == [3]
    gen.close()
    src.close()


def test_updates_and_deletes_with_and_without_replica_identity_full(pg_url, sql, names):
    """Default replica identity: a delete carries only the key. FULL: the whole row."""
    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, v text, big text)')
    src = source(pg_url, t, slot)
    gen = src.changes(src.stream(t), None, wait=0.1)
    next(gen)
    sql(f"INSERT INTO \"{t}\" VALUES (1, 'a', repeat('x', 100000))")
    sql(f"UPDATE \"{t}\" SET v = 'b' WHERE id = 1")  # big is TOASTed and unchanged
    sql(f'DELETE FROM "{t}" WHERE id = 1')
    sql(f'ALTER TABLE "{t}" REPLICA IDENTITY FULL')
    sql(f"INSERT INTO \"{t}\" VALUES (2, 'c', 'small')")
    sql(f'DELETE FROM "{t}" WHERE id = 2')
    rows = [r for b in collect(gen, 5) for r in b.changes.to_pylist()]
    gen.close()
    src.close()
    assert [r[OPERATION] for r in rows] == ["insert", "update", "delete", "insert", "delete"]
    # The unchanged TOASTed value is read back from the table only while the row exists;
    # here it was deleted in the same micro-batch, so the update carries it as null or
    # as read: the delete that follows is what the destination ends with.
    assert rows[2] == {"id": 1, "v": None, "big": None, OPERATION: "delete"}
    assert rows[4] == {"id": 2, "v": "c", "big": "small", OPERATION: "delete"}


def test_an_unchanged_toasted_value_is_read_from_the_table(pg_url, sql, names):
    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, v text, big text)')
    sql(f"INSERT INTO \"{t}\" VALUES (1, 'a', repeat('y', 100000))")
    src = source(pg_url, t, slot)
    gen = src.changes(src.stream(t), None, wait=0.1)
    next(gen)
    sql(f"UPDATE \"{t}\" SET v = 'b' WHERE id = 1")
    row = collect(gen, 1)[0].changes.to_pylist()[0]
    gen.close()
    src.close()
    assert (row["v"], row["big"], row[OPERATION]) == ("b", "y" * 100000, "update")


def test_check_explains_how_to_enable_logical_replication(monkeypatch):
    """The wal_level answer of a server that is not set up (PostgreSQL's default is
    'replica'), given to the check as the server would."""
    admin = Admin({}, Settings("s", "s"))
    monkeypatch.setattr(admin, "_rows", lambda sql, params=(): [("replica",)])
    with pytest.raises(CheckFailed) as err:
        admin.check_wal_level()
    msg = str(err.value)
    assert "wal_level = replica" in msg
    assert "ALTER SYSTEM SET wal_level = logical" in msg and "restart" in msg


def test_check_passes_on_a_logical_server_and_lag_is_reported(pg_url, sql, names):
    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY)')
    src = source(pg_url, t, slot)
    src.check()
    gen = src.changes(src.stream(t), None, wait=0.1)
    next(gen)
    sql(f'INSERT INTO "{t}" SELECT generate_series(1, 100)')
    end = collect(gen, 100)[-1].position
    lag = src.lag()
    assert lag.bytes > 0  # nothing acknowledged yet: the slot retains the WAL
    assert lag.seconds is None or lag.seconds >= 0
    src.acknowledge(end)
    gen.close()  # sends the acknowledged position at once
    src.close()
    confirmed = lambda: sql("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "  # noqa: E731
                            "WHERE slot_name = $1", (slot,))[0][0]
    eventually(lambda: confirmed() == end["lsn"], what="the acknowledged position confirmed")


# --- conn sync --follow -----------------------------------------------------------------


def project(folder: Path, pg_url: str, table: str, slots: dict[str, str], hook_url: str,
            *, mode: str = "mirror", consent: dict | None = None) -> Path:
    """A project following ``table`` into a files destination and a webhook."""
    sources = {name: {"type": "postgres", "config": {
        "url": pg_url, "tables": [table], "replication": {"slot": slot}}}
        for name, slot in slots.items()}
    hook: dict[str, Any] = {"type": "webhook", "config": {
        "url": hook_url, "batch_size": 20, "concurrency": 2, "max_attempts": 3}}
    if consent:
        hook["purposes"] = ["marketing"]
    syncs: dict[str, Any] = {}
    for name in slots:
        dest = "hook" if name.startswith("to_hook") else "landing"
        obj = "records"
        sync: dict[str, Any] = {"source": name, "stream": table, "destination": dest,
                                "object": obj, "match_key": "id", "mode": mode,
                                "max_latency_ms": 100,
                                "mapping": {"id": "id", "status": "status"}}
        if consent and dest == "hook":
            sync["consent"] = consent
        syncs[name] = sync
    doc = {"version": 1, "sources": sources, "destinations": {
        "landing": {"type": "files", "config": {"path": str(folder / "out")}},
        "hook": hook}, "syncs": syncs}
    path = folder / "conn.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def start(folder: Path, source_name: str, dest: str) -> subprocess.Popen:
    env = {**os.environ, "CONN_PLUGINS_STRICT": "1"}
    return subprocess.Popen([CONN, "sync", source_name, dest, "--follow", "-p", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


#: 1 when a walsender (a replication connection) streams from the slot.
STREAMING = ("SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r "
             "ON r.pid = s.active_pid WHERE s.slot_name = $1")


def wait_active(sql, slot: str, proc: subprocess.Popen) -> None:
    """Wait until the follower streams from ``slot``: a replication connection holds it
    (while the slot is being created, the creating session holds it, and changes
    committed then are before the slot's start)."""
    def active() -> bool:
        if proc.poll() is not None:  # refused (a configuration error) or failed
            raise AssertionError(f"the follower exited: {proc.stderr.read().decode()}")
        return sql(STREAMING, (slot,)) == [(1,)]

    eventually(active, timeout=60, what=f"slot {slot} active")


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


def log_rows(folder: Path) -> list[dict[str, Any]]:
    path = folder / "out" / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_follow_delivers_inserts_updates_and_deletes_to_files_and_a_webhook(
        tmp_path, pg_url, sql, names, fault_server):
    t = names("t")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text, secret text)')
    slots = {"to_files": names("s"), "to_hook": names("s")}
    project(tmp_path, pg_url, t, slots, fault_server.url + "/hook")
    followers = []
    try:
        # One after the other: creating a logical slot waits for the transactions in
        # progress, another slot's creation included.
        for name, dest in (("to_files", "landing"), ("to_hook", "hook")):
            followers.append(start(tmp_path, name, dest))
            wait_active(sql, slots[name], followers[-1])
        sql(f"INSERT INTO \"{t}\" VALUES (1, 'feature_failed', 'x'), (2, 'ok', 'y')")
        eventually(lambda: len(fault_server.store) == 2 and len(log_rows(tmp_path)) == 2,
                   what="the inserts")
        sql(f"UPDATE \"{t}\" SET status = 'retried' WHERE id = 1")
        sql(f'DELETE FROM "{t}" WHERE id = 2')
        eventually(lambda: fault_server.store == {"1": {"id": 1, "status": "retried"}}
                   and fault_server.deleted["2"] >= 1,
                   what=lambda: f"webhook receiver: {fault_server.store} {fault_server.deleted}")
        eventually(lambda: any(r["_op"] == "delete" for r in log_rows(tmp_path)),
                   what="files log")
    finally:
        codes = [stop(p) for p in followers]
    for code, err in codes:
        assert code == 130, err  # stopped on request: "interrupted", as documented
    final: dict[int, Any] = {}
    for r in log_rows(tmp_path):
        if r["_op"] == "delete":
            final.pop(r["id"], None)
        else:
            final[r["id"]] = r["status"]
    assert final == {1: "retried"}
    assert all("secret" not in r for r in log_rows(tmp_path))


def test_consent_withdrawn_by_an_update_deletes_in_mirror_mode(
        tmp_path, pg_url, sql, names, fault_server):
    t = names("t")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text, mkt text)')
    slots = {"to_hook": names("s")}
    project(tmp_path, pg_url, t, slots, fault_server.url + "/hook",
            consent={"columns": {"marketing": "mkt"}})
    proc = start(tmp_path, "to_hook", "hook")
    try:
        wait_active(sql, slots["to_hook"], proc)
        sql(f"INSERT INTO \"{t}\" VALUES (1, 'a', 'yes'), (2, 'b', 'no'), (3, 'c', 'yes')")
        eventually(lambda: set(fault_server.store) == {"1", "3"},
                   what=lambda: f"consented rows: {fault_server.store}, {proc.poll()}")
        sql(f"UPDATE \"{t}\" SET mkt = 'no' WHERE id = 3")  # withdrawn
        eventually(lambda: set(fault_server.store) == {"1"}, what="the withdrawal's delete")
    finally:
        stop(proc)
    sent = [r for req in fault_server.requests if req.json
            for r in req.json.get("records", []) if req.json.get("operation") == "upsert"]
    assert {r["id"] for r in sent} == {1, 3}  # the row without consent never left


def test_sigkill_in_mid_stream_loses_nothing_and_resends_only_requests_in_flight(
        tmp_path, pg_url, sql, names, fault_server):
    """Changes keep coming while the follower is killed (SIGKILL) three times, each time
    while a request is in flight, and restarted: every change arrives; a record arrives
    twice only as a re-send of a request in flight, with the idempotency key it was
    first sent with."""
    t = names("t")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text)')
    slots = {"to_hook": names("s")}
    project(tmp_path, pg_url, t, slots, fault_server.url + "/hook")
    fault_server.configure(delay=0.3)  # a slow API: a kill finds requests in flight
    proc = start(tmp_path, "to_hook", "hook")
    kills, n = 3, 300
    done = threading.Event()

    def write() -> None:
        import adbc_driver_postgresql.dbapi as dbapi

        with dbapi.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:
            for i in range(n):
                cur.execute(f"INSERT INTO \"{t}\" VALUES ({i}, 'new')")
                if i % 3 == 0 and i:
                    cur.execute(f"UPDATE \"{t}\" SET status = 'seen-{i}' WHERE id = {i - 1}")
                time.sleep(0.02)
        done.set()

    try:
        wait_active(sql, slots["to_hook"], proc)
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        for _ in range(kills):
            seen = len(fault_server.requests)
            eventually(lambda seen=seen: len(fault_server.requests) > seen, timeout=60,
                       what="a request in flight")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc = start(tmp_path, "to_hook", "hook")
        writer.join(timeout=120)
        assert done.is_set()
        expected = {str(r[0]): {"id": r[0], "status": r[1]}
                    for r in sql(f'SELECT id, status FROM "{t}"')}
        eventually(lambda: fault_server.store == expected, timeout=90,
                   what=lambda: "every change at the receiver; differing: " + str(
                       {k: (v, fault_server.store.get(k)) for k, v in expected.items()
                        if fault_server.store.get(k) != v}) + f" exit {proc.poll()}: "
                   + (proc.stderr.read().decode() if proc.poll() is not None else ""))
    finally:
        stop(proc)
    # Every arrival of the same change (record id + payload) carries one key.
    keys: dict[str, set[str]] = {}
    arrivals: dict[str, int] = {}
    for req in fault_server.requests:
        body = req.json or {}
        for rec, ikey in zip(body.get("records", []), body.get("idempotency_keys", []),
                             strict=True):
            change = json.dumps(rec, sort_keys=True)
            keys.setdefault(change, set()).add(ikey)
            arrivals[change] = arrivals.get(change, 0) + 1
    assert all(len(k) == 1 for k in keys.values()), "a re-sent change changed its key"
    resent = sum(c - 1 for c in arrivals.values())
    print(f"{len(fault_server.requests)} requests, {resent} records re-sent")
    assert 0 < resent <= kills * 2 * 20, f"{resent} records re-sent by {kills} kills"

"""`conn sync --follow` from PostgreSQL end to end (docs/realtime.md), against the real
local server: the CLI follows a table into the files and webhook destinations; consent
withdrawn by an update deletes in mirror mode; SIGKILL in mid-stream loses nothing and
re-sends only the requests in flight, with their idempotency keys.

Here rather than in the postgres plugin's tests because it needs three plugins (the
postgres source, the files and webhook destinations), which the core's environment has.
Each test uses its own table, publication and slot, and drops the slot at the end.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import follow_kit as kit
from tests.conftest import unavailable
from tests.follow_kit import delivered, eventually, kill, start, stop

pg_testing = pytest.importorskip("conn_postgres.testing")
pytest.importorskip("conn_destination_webhook")
pytest.importorskip("conn_destination_files")

pytestmark = pytest.mark.services
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url() -> str:
    import psycopg2

    try:
        psycopg2.connect(PG_URL, connect_timeout=3).close()
    except psycopg2.Error as exc:
        unavailable(f"PostgreSQL at 127.0.0.1:5432 cannot be reached: {exc}")
    return PG_URL


@pytest.fixture
def sql(pg_url: str) -> Iterator[Callable[..., Any]]:
    """Run SQL on an autocommit connection: rows, or None for a statement without."""
    import psycopg2

    conn = psycopg2.connect(pg_url)
    conn.autocommit = True

    def run(statement: str, params: tuple = ()) -> list[tuple] | None:
        with conn.cursor() as cur:
            cur.execute(statement.replace("$1", "%s"), params or None)
            return cur.fetchall() if cur.description else None

    yield run
    conn.close()


#: Unique names, their slots, publications and tables dropped afterwards; a server
#: without logical replication fails under CI.
names = pg_testing.names_fixture(unavailable)


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
        eventually(lambda: len(fault_server.store) == 2 and len(delivered(tmp_path)) == 2,
                   what="the inserts")
        sql(f"UPDATE \"{t}\" SET status = 'retried' WHERE id = 1")
        sql(f'DELETE FROM "{t}" WHERE id = 2')
        eventually(lambda: fault_server.store == {"1": {"id": 1, "status": "retried"}}
                   and fault_server.deleted["2"] >= 1,
                   what=lambda: f"webhook receiver: {fault_server.store} {fault_server.deleted}")
        eventually(lambda: any(r["_op"] == "delete" for r in delivered(tmp_path)),
                   what="files log")
    finally:
        codes = [stop(p) for p in followers]
    for code, err in codes:
        assert code == 130, err  # stopped on request: "interrupted", as documented
    final: dict[int, Any] = {}
    for r in delivered(tmp_path):
        if r["_op"] == "delete":
            final.pop(r["id"], None)
        else:
            final[r["id"]] = r["status"]
    assert final == {1: "retried"}
    assert all("secret" not in r for r in delivered(tmp_path))


@pytest.mark.slow
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


@pytest.mark.slow
def test_sigkill_in_mid_stream_loses_nothing_and_resends_only_requests_in_flight(
        tmp_path, pg_url, sql, names, fault_server):
    """Changes keep coming while the follower is killed (SIGKILL) three times, each time
    while a request is in flight, and restarted: every change arrives; a record arrives
    twice only as a re-send of a request in flight (or answered and not yet committed),
    always with the idempotency key it was first sent with."""
    t = names("t")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text)')
    slots = {"to_hook": names("s")}
    project(tmp_path, pg_url, t, slots, fault_server.url + "/hook")
    fault_server.configure(delay=0.3)  # a slow API: a kill finds requests in flight
    proc = start(tmp_path, "to_hook", "hook")
    kills, n = 3, 300
    done = threading.Event()

    def write() -> None:
        import psycopg2

        conn = psycopg2.connect(pg_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            for i in range(n):
                cur.execute(f"INSERT INTO \"{t}\" VALUES ({i}, 'new')")
                if i % 3 == 0 and i:
                    cur.execute(f"UPDATE \"{t}\" SET status = 'seen-{i}' WHERE id = {i - 1}")
                time.sleep(0.02)
        conn.close()
        done.set()

    try:
        wait_active(sql, slots["to_hook"], proc)
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        for _ in range(kills):
            seen = len(fault_server.requests)
            eventually(lambda seen=seen: len(fault_server.requests) > seen, timeout=60,
                       what="a request in flight")
            kill(proc)
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
    arrivals, keys = kit.arrivals(fault_server.requests)
    resent = sum(c - 1 for c in arrivals.values())
    print(f"{len(fault_server.requests)} requests, {resent} records re-sent")
    # At most the requests in flight (concurrency 2 x 20 records) and one such window
    # answered but not yet committed, at each kill (docs/realtime.md).
    assert 0 < resent <= kills * 2 * (2 * 20), f"{resent} records re-sent by {kills} kills"
    # The first micro-batch after a restart reaches at least as far as the one lost
    # (conn.runtime.stream_state), however PostgreSQL's redelivery is grouped.
    changed = {c: k for c, k in keys.items() if len(k) > 1}
    assert not changed, f"re-sent under another idempotency key: {changed}"


@pytest.mark.slow
def test_a_terminated_walsender_is_reconnected_and_loses_nothing(
        tmp_path, pg_url, sql, names, fault_server):
    """The server ends the follower's replication connection twice
    (pg_terminate_backend on the slot's walsender) while rows keep coming and requests
    are in flight to a slow webhook: the follower reconnects by itself (with backoff,
    one log line each way) from the last transaction it handed out, every row arrives,
    and nothing was sent twice but the requests in flight."""
    t = names("t")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text)')
    slot = names("s")
    project(tmp_path, pg_url, t, {"to_hook": slot}, fault_server.url + "/hook",
            mode="upsert")

    def insert(rows: list[dict]) -> None:
        import psycopg2

        conn = psycopg2.connect(pg_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            for r in rows:
                cur.execute(f'INSERT INTO "{t}" VALUES (%s, %s)', (r["id"], r["status"]))
        conn.close()

    def terminate() -> None:
        pid = eventually(lambda: (sql("SELECT active_pid FROM pg_replication_slots "
                                      "WHERE slot_name = $1", (slot,)) or [(None,)])[0][0],
                         what="the walsender")
        sql("SELECT pg_terminate_backend($1)", (pid,))

    _, changed = kit.follow_through_cuts(
        tmp_path, fault_server, insert, lambda: sql(STREAMING, (slot,)) == [(1,)],
        terminate, total=240, source="to_hook", secrets=["postgres@"])
    assert not changed, f"re-sent under another idempotency key: {changed}"

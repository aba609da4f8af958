"""`conn sync --follow` from PostgreSQL through real server restarts (docs/realtime.md,
"Faults"): a private cluster of the test's own (tests/pg_private.py) is shut down
cleanly once and crashed once in mid-stream, while rows keep coming and requests are in
flight to a slow loopback webhook. The machine's shared server is never touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests import follow_kit as kit
from tests.pg_private import PrivatePostgres

pytest.importorskip("conn_postgres")
pytest.importorskip("conn_destination_webhook")

pytestmark = [pytest.mark.services, pytest.mark.slow]
#: In the URL to show it never reaches the log (trust authentication ignores it).
PASSWORD = "pw-8c1f-not-for-logs"


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


def test_a_server_restart_and_a_crash_in_mid_stream_lose_nothing(
        tmp_path, private_pg, fault_server):
    """The follower's PostgreSQL server is restarted (``pg_ctl restart -m fast``) and
    then crashed (``-m immediate``, recovered from the WAL at the next start), down 1 s
    each time, while a writer keeps inserting rows and updating earlier ones (their
    large, TOASTed column unchanged, which the follower reads back on its ordinary
    connection). The follower reconnects by itself, every row arrives, nothing is sent
    twice but the requests in flight under their original idempotency keys, the log
    says so on one line each way, and a stop ends it with 130."""
    import psycopg2

    from tests.test_follow_postgres import STREAMING, project

    url = private_pg.url.replace("postgres@", f"postgres:{PASSWORD}@")
    table, slot = "people", "conn_restart"
    with psycopg2.connect(private_pg.url) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, status text, note text)")
        # Stored out of line, uncompressed: an update that leaves it alone does not
        # carry it in the WAL ("unchanged TOAST"), so the follower queries it.
        cur.execute(f"ALTER TABLE {table} ALTER COLUMN note SET STORAGE EXTERNAL")
    conn.close()
    project(tmp_path, url, table, {"to_hook": slot}, fault_server.url + "/hook",
            mode="upsert")

    def sql(statement: str, params: tuple = ()) -> list[tuple]:
        c = psycopg2.connect(private_pg.url, connect_timeout=3)
        try:
            c.autocommit = True  # one statement string: one implicit transaction
            with c.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            c.close()

    def write(rows: list[dict]) -> None:
        """Insert ``rows`` and mark the five before them seen, in one transaction,
        until the server takes it (it may be down; a commit whose answer a crash
        swallowed is repeated harmlessly: same rows, same values)."""
        lo = min(r["id"] for r in rows)
        for _ in range(300):
            try:
                sql(f"INSERT INTO {table} SELECT (r->>'id')::int, r->>'status', "
                    f"repeat('n', 4000) FROM json_array_elements(%s::json) r "
                    f"ON CONFLICT (id) DO NOTHING; "
                    f"UPDATE {table} SET status = 'seen' WHERE id >= %s AND id < %s",
                    (json.dumps(rows), lo - 5, lo))
                return
            except psycopg2.Error:  # down, or ended by the restart
                time.sleep(0.1)
        raise AssertionError("the private server did not come back")

    def missing_updates() -> str:
        """What the receiver lacks of the table's last state (empty: nothing)."""
        final = {r[0]: r[1] for r in sql(f"SELECT id, status FROM {table}")}
        got = {int(k): v["status"] for k, v in fault_server.store.items()}
        return ", ".join(f"id {k}: {v!r} at the source, {got.get(k)!r} received"
                         for k, v in sorted(final.items()) if got.get(k) != v)

    modes = iter(["fast", "immediate"])
    _, changed = kit.follow_through_cuts(
        tmp_path, fault_server, write, lambda: sql(STREAMING.replace("$1", "%s"),
                                                   (slot,)) == [(1,)],
        lambda: private_pg.restart(next(modes)), total=240, source="to_hook",
        secrets=[PASSWORD], settled=missing_updates)
    assert not changed, f"re-sent under another idempotency key: {changed}"

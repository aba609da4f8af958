"""Following PostgreSQL tables through logical replication (README "Streaming"), against
the real local server: types, the runtime's acknowledgements, replica identity,
unchanged TOASTed values, check(). ``conn sync --follow`` end to end (files and webhook
destinations, consent withdrawals, SIGKILL in mid-stream) is in conn's
tests/test_follow_postgres.py, which has those plugins.

Every test uses its own table, publication and slot, and drops the slot at the end (a
slot left behind keeps WAL forever). Tests skip, saying why, when the server is not
reachable or its ``wal_level`` is not ``logical``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conn.errors import CheckFailed
from conn.streaming import OPERATION
from conn.testing.harness import read_all
from conn.testing.services import eventually
from conn_postgres.replication import Admin, Settings
from conn_postgres.source import PostgresSource

from .test_postgres import WIDE, WIDE_ROWS

pytestmark = pytest.mark.services


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

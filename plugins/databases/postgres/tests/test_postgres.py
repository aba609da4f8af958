"""PostgreSQL source and destination against the real server (no mocks)."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import threading
import time
import uuid

import pyarrow as pa
import pytest
from conn.errors import CheckFailed, ConfigError
from conn.testing.harness import read_all, write_records
from conn_postgres.destination import PostgresDestination
from conn_postgres.source import PostgresSource

WIDE = """
CREATE TABLE "{t}" (
  id bigint PRIMARY KEY, i2 smallint, i4 integer, n numeric(12,3), big numeric(40,5),
  f4 real, f8 double precision, b boolean, t text, vc varchar(20), by bytea, u uuid,
  j json, jb jsonb, d date, tm time, ts timestamp, tstz timestamptz, ai int[], at text[],
  iv interval, updated_at timestamptz
)"""

WIDE_ROWS = """
INSERT INTO "{t}" VALUES
 (1, 2, 3, 12.345, 123456789012345678901234567890.12345, 1.5, 2.25, true, 'héllo', 'v',
  '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{"a": [1, 2]}}', '{{"b": null}}',
  '2024-02-29', '23:59:59.999999', '2024-01-02 03:04:05.123456',
  '2024-01-02 03:04:05.654321+02', ARRAY[1, NULL, 3], ARRAY['x', 'y"z'], '1 day 02:03:04',
  '2024-01-01 00:00:00+00'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-02 00:00:00+00'),
 (3, -32768, -2147483648, -0.001, 0, 'NaN', '-Infinity', false, '', '''', '\\x',
  '00000000-0000-0000-0000-000000000000', '[]', '{{}}', '0001-01-01', '00:00',
  '1970-01-01', '2262-04-11 23:47:16+00', '{{}}', '{{}}', '-1 mon', '2024-01-03 00:00:00+00')
"""


#: Connectors the running test made; closed after it (their connections too).
_made: list[PostgresSource | PostgresDestination] = []


@pytest.fixture(autouse=True)
def _close_connectors():
    yield
    while _made:
        _made.pop().close()


def source(url: str, **cfg) -> PostgresSource:
    _made.append(s := PostgresSource({"url": url, **cfg}))
    return s


def dest(url: str, **cfg) -> PostgresDestination:
    _made.append(d := PostgresDestination({"url": url, **cfg}))
    return d


def test_check_and_bad_password_is_redacted(pg_url):
    source(pg_url).check()
    bad = source("postgresql://nobody:s3cretPassw0rd@127.0.0.1:1/test")
    with pytest.raises(CheckFailed) as err:
        bad.check()
    assert "s3cretPassw0rd" not in str(err.value)


@pytest.mark.parametrize("password", ["p@ss:TopSecretFragment99/x",
                                      "Zz9/Wq7?Kk3#Mm5[Nn1]Pp2%Qq4@Rr6:Ss8"])
def test_password_with_url_delimiters_never_leaks(pg_url, password):
    """Written into the URL as is, the password cannot be parsed back: the error says how
    to write it and quotes no piece of it; percent-encoded, it reaches the server."""
    from urllib.parse import quote

    pieces = [p for p in re.split(r"[:/@?#\[\]]", password) if len(p) >= 4]
    with pytest.raises((ConfigError, CheckFailed)) as err:
        source(f"postgresql://nobody:{password}@127.0.0.1:5432/test").check()
    assert not [p for p in pieces if p in str(err.value)], str(err.value)
    with pytest.raises(CheckFailed) as err:
        source(f"postgresql://nobody:{quote(password, safe='')}@127.0.0.1:5432/test").check()
    assert not [p for p in [password, *pieces] if p in str(err.value)], str(err.value)


def test_unreadable_url_port_names_the_fix_not_the_password():
    with pytest.raises((ConfigError, CheckFailed)) as err:
        source("postgresql://u:abc/TopSecretFragment99@127.0.0.1:5432/test").check()
    assert "percent-encoded" in str(err.value) and "TopSecret" not in str(err.value)


def test_type_matrix_round_trip(pg_url, sql, table):
    sql(WIDE.format(t=table))
    sql(WIDE_ROWS.format(t=table))
    src = source(pg_url, tables=[table])
    info = src.stream(table)
    s = info.schema
    assert info.primary_key == ("id",)
    assert s.field("i2").type == pa.int16() and s.field("i4").type == pa.int32()
    assert s.field("n").type == pa.decimal128(12, 3)
    assert s.field("big").type == pa.decimal256(40, 5)
    assert s.field("f4").type == pa.float32() and s.field("b").type == pa.bool_()
    assert s.field("ts").type == pa.timestamp("us")
    assert s.field("tstz").type == pa.timestamp("us", "UTC")
    assert s.field("d").type == pa.date32() and s.field("tm").type == pa.time64("us")
    assert s.field("ai").type == pa.list_(pa.int32())
    assert s.field("by").type == pa.binary() and s.field("u").type == pa.string()
    data, _ = read_all(src, table)
    rows = {r["id"]: r for r in data.to_pylist()}
    r1 = rows[1]
    assert r1["n"] == decimal.Decimal("12.345")
    assert r1["big"] == decimal.Decimal("123456789012345678901234567890.12345")
    assert r1["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert r1["tstz"] == dt.datetime(2024, 1, 2, 1, 4, 5, 654321, tzinfo=dt.UTC)
    assert r1["ai"] == [1, None, 3] and r1["at"] == ["x", 'y"z']
    assert all(v is None for k, v in rows[2].items() if k not in ("id", "updated_at"))

    # source -> destination: a new table created from the source's Arrow schema
    out = f"{table}_copy"
    try:
        d = dest(pg_url, tables={out: {"key": "id", "create_table": True}})
        res = write_records(d, out, data, operation="upsert")
        assert not res.rejected and not res.pending, res
        back, _ = read_all(source(pg_url, tables=[out]), out)
        # repr: NaN equals itself there
        assert repr(back.sort_by("id").to_pylist()) == repr(data.sort_by("id").to_pylist())
        assert back.schema.types == data.schema.types
        types = dict(sql("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_name = $1", (out,)))
        assert types["u"] == "uuid" and types["jb"] == "jsonb" and types["n"] == "numeric"
        # same values compared inside PostgreSQL itself (NaN, infinities, intervals)
        cols = ("id, i2, i4, n, big, f4, f8, b, t, vc, by, u, j::text, jb, d, tm, ts, tstz, "
                "ai, at, iv, updated_at")
        diff = sql(f'SELECT count(*) FROM (SELECT {cols} FROM "{table}" EXCEPT '
                   f'SELECT {cols} FROM "{out}") x')
    finally:
        sql(f'DROP TABLE IF EXISTS "{out}"')
    assert diff == [(0,)]


def test_incremental_reads_with_bookmarks(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, v text, ts timestamptz)')
    sql(f"""INSERT INTO "{table}" SELECT g, 'v' || g,
            '2024-01-01'::timestamptz + (g / 2) * interval '1 hour'
            FROM generate_series(1, 25) g""")
    src = source(pg_url, tables=[table], streams={table: {"cursor": "ts"}})
    data, states = read_all(src, table, batch_rows=4)
    assert data.num_rows == 25 and states
    # bookmarks never split rows sharing one cursor value
    for st in states[:-1]:
        ts = dt.datetime.fromisoformat(st)
        n = sum(1 for r in data.to_pylist() if r["ts"] <= ts)
        assert n in range(1, 26)
    last = states[-1]
    again, more = read_all(src, table, state=last)
    assert again.num_rows == 0 and more == []
    sql(f"""INSERT INTO "{table}" VALUES (100, 'new', '2030-01-01'),
            (101, 'new', '2030-01-01')""")
    sql(f"""UPDATE "{table}" SET v = 'changed', ts = '2031-01-01' WHERE id = 3""")
    new, st2 = read_all(src, table, state=last, batch_rows=2)
    assert sorted(new.column("id").to_pylist()) == [3, 100, 101]
    assert st2[-1].startswith("2031-01-01")
    # resuming from any intermediate bookmark reads every row after it exactly
    mid = states[len(states) // 2]
    rest, _ = read_all(src, table, state=mid)
    ts_mid = dt.datetime.fromisoformat(mid)
    assert rest.num_rows == sum(1 for r in data.to_pylist() if r["ts"] > ts_mid) + 3 - \
        (1 if dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC) > ts_mid else 0)


def test_query_stream(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, amount numeric(10,2))')
    sql(f'INSERT INTO "{table}" VALUES (1, 1.50), (2, 2.25), (3, 9.99)')
    src = source(pg_url)
    info = src.stream(query=f'SELECT id, amount * 2 AS dbl, gen_random_uuid() AS u '
                            f'FROM "{table}" WHERE id > 1', primary_key=("id",))
    assert info.schema.field("u").type == pa.string()
    batches = [b for b in src.read(info) if isinstance(b, pa.RecordBatch)]
    got = pa.Table.from_batches(batches).sort_by("id")
    assert got.column("id").to_pylist() == [2, 3]
    assert got.column("dbl").to_pylist() == ["4.50", "19.98"]  # unconstrained numeric


def test_streaming_batches_are_bounded(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, pad text)')
    sql(f"INSERT INTO \"{table}\" SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
    src = source(pg_url, tables=[table])
    sizes = [b.num_rows for b in src.read(src.stream(table), batch_rows=3000)
             if isinstance(b, pa.RecordBatch)]
    assert sum(sizes) == 20000 and max(sizes) <= 3000


def test_upsert_update_insert_delete(pg_url, sql, table):
    d = dest(pg_url, tables={table: {"key": "id", "create_table": True}}, batch_size=3)
    rows = [{"id": i, "name": f"n{i}", "score": i * 1.5} for i in range(10)]
    assert write_records(d, table, rows) == write_records(d, table, rows)  # idempotent
    assert sql(f'SELECT count(*) FROM "{table}"') == [(10,)]
    res = write_records(d, table, [{"id": 1, "name": "one", "score": 0.0},
                                   {"id": 99, "name": "x", "score": 0.0}], operation="update")
    assert [r.index for r in res.rejected] == [1] and not res.rejected[0].retryable
    assert sql(f'SELECT name FROM "{table}" WHERE id = 1') == [("one",)]
    res = write_records(d, table, [{"id": 50, "name": "new", "score": 1.0},
                                   {"id": 2, "name": "dup", "score": 1.0}], operation="insert")
    assert [r.index for r in res.rejected] == [1]
    assert "duplicate key" in res.rejected[0].reason
    assert sql(f'SELECT name FROM "{table}" WHERE id IN (2, 50) ORDER BY id') == \
        [("n2",), ("new",)]
    # duplicate keys inside one upsert batch: the last one wins
    write_records(d, table, [{"id": 7, "name": "a", "score": 1.0},
                             {"id": 7, "name": "b", "score": 2.0}])
    assert sql(f'SELECT name FROM "{table}" WHERE id = 7') == [("b",)]
    res = write_records(d, table, [{"id": 1}, {"id": 2}, {"id": 12345}], operation="delete")
    assert not res.rejected and not res.pending
    assert sql(f'SELECT count(*) FROM "{table}"') == [(9,)]


def test_constraint_violations_are_rejected_per_row(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, age int CHECK (age >= 0), '
        f'email text NOT NULL)')
    d = dest(pg_url)
    rows = [{"id": 1, "age": 5, "email": "a@x"}, {"id": 2, "age": -1, "email": "b@x"},
            {"id": 3, "age": 7, "email": None}, {"id": 4, "age": 9, "email": "d@x"}]
    res = write_records(d, table, rows)
    assert sorted(r.index for r in res.rejected) == [1, 2]
    assert "check constraint" in res.rejected[0].reason
    assert "null value" in res.rejected[1].reason
    assert sql(f'SELECT id FROM "{table}" ORDER BY id') == [(1,), (4,)]
    # a bad value for the column type is a per-row rejection too
    res = write_records(d, table, [{"id": 5, "age": "12", "email": "e"},
                                   {"id": 6, "age": "twelve", "email": "f"}])
    assert [r.index for r in res.rejected] == [1]
    assert sql(f'SELECT age FROM "{table}" WHERE id = 5') == [(12,)]


def test_schema_mismatch_refused_unless_evolve(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, name text)')
    # Destination.write keeps rows pending and reports the error (the runtime stops)
    res = write_records(dest(pg_url), table, [{"id": 1, "name": "a", "extra": 1.5}])
    assert res.pending == [0] and isinstance(res.error, ConfigError)
    assert re.search("no column.*'extra'.*evolve: true", str(res.error))
    res = write_records(dest(pg_url, tables={f"{table}_no": {"key": "id"}}), f"{table}_no",
                        [{"id": 1}])
    assert isinstance(res.error, ConfigError)
    assert re.search("does not exist.*create_table", str(res.error))
    d = dest(pg_url, evolve=True)
    res = write_records(d, table, [{"id": 1, "name": "a", "extra": 1.5}])
    assert not res.rejected and not res.pending
    assert sql(f'SELECT extra FROM "{table}"') == [(1.5,)]
    res = write_records(d, table, [{"id": 2, "name": "b", "extra": [1, 2]}])
    assert isinstance(res.error, ConfigError) and "type mismatch" in str(res.error)


HOSTILE = 'x"; DROP TABLE victim; --'


def test_injection_attempts_are_inert(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}_victim" (id int)')
    try:
        hostile_table = f'{table}"; DROP TABLE "{table}_victim"; --'
        d = dest(pg_url, tables={hostile_table: {"key": "id'); --", "create_table": True}})
        rows = [{"id'); --": 1, HOSTILE: "'); DELETE FROM pg_class; --", "v": "a'b\"c"}]
        res = write_records(d, hostile_table, rows)
        assert not res.rejected and not res.pending, res
        got = sql(f'SELECT "{HOSTILE.replace(chr(34), chr(34) * 2)}" FROM '
                  f'"{hostile_table.replace(chr(34), chr(34) * 2)}"')
        assert got == [("'); DELETE FROM pg_class; --",)]
        assert sql(f'SELECT count(*) FROM "{table}_victim"') == [(0,)]
        src = source(pg_url, tables=[hostile_table],
                     streams={hostile_table: {"cursor": HOSTILE}})
        data, _states = read_all(src, hostile_table)
        assert data.num_rows == 1
        again, _ = read_all(src, hostile_table, state="' OR 1=1 --")
        assert again.num_rows == 1  # the bookmark is a bound value compared as text
        write_records(d, hostile_table, [{"id'); --": 1}], operation="delete",
                      match_key="id'); --")
        assert sql(f'SELECT count(*) FROM "{table}_victim"') == [(0,)]
    finally:
        sql(f'DROP TABLE IF EXISTS "{table}_victim"')
        sql(f'DROP TABLE IF EXISTS "{hostile_table.replace(chr(34), chr(34) * 2)}"')


def test_killed_connection_mid_write_leaves_nothing(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, v text)')
    app = f"conn-kill-{uuid.uuid4().hex[:8]}"
    d = dest(pg_url, application_name=app)
    d.check()
    rows = [{"id": i, "v": "x" * 50} for i in range(5000)]
    result: dict = {}
    # Hold a lock so the writer stops inside its transaction (after COPY to the stage
    # table, at the merge), then kill its backend from another connection.
    import adbc_driver_postgresql.dbapi as dbapi

    locker = dbapi.connect(pg_url)
    with locker.cursor() as cur:
        cur.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
    t = threading.Thread(target=lambda: result.update(res=write_records(d, table, rows)))
    t.start()
    deadline = time.time() + 20
    killed = []
    while time.time() < deadline and not killed:
        killed = sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = $1 AND wait_event_type = 'Lock'", (app,))
        time.sleep(0.05)
    locker.rollback()
    locker.close()
    t.join(30)
    assert killed, "the writer never waited on the lock"
    res = result["res"]
    assert len(res.pending) == 5000 and res.error is not None
    assert sql(f'SELECT count(*) FROM "{table}"') == [(0,)]
    # the destination reconnects and the retry writes everything
    res = write_records(d, table, rows)
    assert not res.pending and not res.rejected
    assert sql(f'SELECT count(*) FROM "{table}"') == [(5000,)]


def test_objects_lists_existing_tables(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, email text UNIQUE, n numeric(5,1))')
    objs = {o.name: o for o in dest(pg_url).objects()}
    o = objs[table]
    assert o.identifiers == ("id", "email")
    assert o.properties["n"]["type"] == ["number", "null"]


def test_fields_tls_and_redacted_destination_errors(pg_url, sql):
    d = dest("", host="127.0.0.1", port=5432, user="postgres", database="test",
             sslmode="require")
    try:  # sslmode reaches libpq: TLS is negotiated, or refused by a server without it
        with d._connection().cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchall() == [(True,)]
        d.close()
    except CheckFailed as exc:
        assert "SSL was required" in str(exc)
    plain = dest("", host="127.0.0.1", port=5432, user="postgres", database="test",
                 sslmode="disable")
    plain.check()
    plain.close()
    bad = dest("", host="127.0.0.1", port=1, user="x", password="Pa55w0rd-never-shown",
               database="test")
    with pytest.raises(CheckFailed) as err:
        bad.check()
    assert "Pa55w0rd-never-shown" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_connection_killed_during_read_is_an_error(pg_url, sql, table):
    from conn.errors import ConnError

    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, ts timestamptz)')
    sql(f"INSERT INTO \"{table}\" SELECT g, now() FROM generate_series(1, 30000) g")
    app = f"conn-read-{uuid.uuid4().hex[:8]}"
    src = source(pg_url, application_name=app, tables=[table],
                 streams={table: {"cursor": "ts"}})
    it = src.read(src.stream(table), state="2000-01-01", batch_rows=1000)
    first = next(it)
    assert isinstance(first, pa.RecordBatch)
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        (app,))
    with pytest.raises(ConnError, match="reading failed"):
        for _ in it:
            pass
    # the source reconnects for the next read
    data, _ = read_all(src, table)
    assert data.num_rows == 30000


def test_keyless_table_takes_appends(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (event text, at timestamptz)')
    d = dest(pg_url)
    obj = d.object(table)
    assert obj.identifiers == ("event", "at")
    rows = [{"event": "signup", "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}] * 3
    res = write_records(d, table, rows, operation="append")
    assert not res.rejected and not res.pending
    assert sql(f'SELECT count(*) FROM "{table}"') == [(3,)]
    res = write_records(d, table, rows[:1])  # upsert needs a unique key: a clear error
    assert isinstance(res.error, ConfigError) and "unique index" in str(res.error)


def test_nested_values_into_json_columns(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, tags jsonb, attrs json)')
    rows = pa.table({
        "id": [1, 2],
        "tags": pa.array([["a", "b"], None], pa.list_(pa.string())),
        "attrs": pa.array([{"plan": "pro", "seats": 3}, {"plan": "free", "seats": 1}]),
    })
    res = write_records(dest(pg_url), table, rows)
    assert not res.rejected and not res.pending, res
    assert sql(f"""SELECT tags::text, attrs->>'plan' FROM "{table}" ORDER BY id""") == \
        [('["a", "b"]', "pro"), (None, "free")]


def test_erase_deletes_every_row_of_the_key_and_is_idempotent(pg_url, sql, table):
    """``erase`` removes every row holding the key (an append table may hold several),
    leaves other keys alone, and acknowledges unknown keys and a second erase; no
    staging table survives the transaction."""
    sql(f'CREATE TABLE "{table}" (id text, who text, note text)')
    d = dest(pg_url, tables={table: {"key": "who"}})
    assert "erase" in d.object(table).capabilities.operations()
    rows = [{"id": f"e{i}", "who": "ada" if i % 2 else "bob", "note": f"n{i}"}
            for i in range(20)]
    assert not write_records(d, table, rows, operation="append").rejected
    for _ in range(2):
        res = write_records(d, table, [{"who": "ada"}, {"who": "never"}], operation="erase")
        assert not res.rejected and not res.pending and res.error is None
    assert sql(f'SELECT DISTINCT who FROM "{table}"') == [("bob",)]
    assert sql("SELECT count(*) FROM pg_class WHERE relname LIKE '_conn_stage_%' "
               "AND relpersistence <> 't'") == [(0,)]

"""conn's conformance suites for the ``postgres`` source and destination
(conn.testing.conformance), against the local PostgreSQL server of ``conftest.py``.

Tables get a unique name per test session (other suites may run at the same time) and are
dropped afterwards.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conn.testing.conformance import SuiteContext, destination_suite, source_suite
from conn_postgres.destination import PostgresDestination
from conn_postgres.source import PostgresSource

ROWS = 1_000
SUFFIX = uuid.uuid4().hex[:10]
PEOPLE, BIG, CONTACTS = f"conf_people_{SUFFIX}", f"conf_big_{SUFFIX}", f"conf_contacts_{SUFFIX}"
CHANGES = f"conf_changes_{SUFFIX}"
_ids = itertools.count(1)
BAD_URL = "postgresql://nobody:s3cretPassw0rd-conf@127.0.0.1:1/test"


@pytest.fixture(scope="module", autouse=True)
def _drop_tables(pg_url: str) -> Iterator[None]:
    yield
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:
        for table in (PEOPLE, BIG, CONTACTS, CHANGES):
            cur.execute(f'DROP TABLE IF EXISTS "{table}"')


def source_config(ctx: SuiteContext) -> dict[str, Any]:
    """Tables ``people`` (1,000 rows, cursor ``updated_at``) and ``big`` (200,000 rows, for
    the memory check), created on first use."""
    sql = ctx.fixture("sql")
    if not sql(f"SELECT to_regclass('{PEOPLE}')")[0][0]:
        sql(f'CREATE TABLE "{PEOPLE}" (id int PRIMARY KEY, email text NOT NULL, name text, '
            "updated_at timestamptz NOT NULL)")
        sql(f"""INSERT INTO "{PEOPLE}" SELECT g - 1, 'person' || (g - 1) || '@example.com',
                CASE WHEN g % 7 = 0 THEN NULL ELSE 'Zoë 東京 ' || g END,
                '2024-01-01'::timestamptz + (g / 3) * interval '1 second'
                FROM generate_series(1, {ROWS}) g""")
        sql(f'CREATE TABLE "{BIG}" (id bigint PRIMARY KEY, label text)')
        sql(f"""INSERT INTO "{BIG}" SELECT g, repeat('x', 40) || g
                FROM generate_series(1, 200000) g""")
    return {"url": ctx.fixture("pg_url"), "tables": [PEOPLE, BIG],
            "streams": {PEOPLE: {"cursor": "updated_at"}}}


def changes_config(ctx: SuiteContext) -> dict[str, Any]:
    """Table ``changes`` followed through a slot of the test's own (dropped after it)."""
    ctx.fixture("sql")(f'CREATE TABLE IF NOT EXISTS "{CHANGES}" (id int PRIMARY KEY, '
                       "email text)")
    if "slot" not in ctx.extra:
        ctx.extra["slot"] = ctx.fixture("names")("s")
    return {"url": ctx.fixture("pg_url"), "tables": [CHANGES],
            "replication": {"slot": ctx.extra["slot"]}}


def make_changes(ctx: SuiteContext, round_: int) -> int:
    """Two inserts and an update, each its own transaction."""
    sql = ctx.fixture("sql")
    a, b = next(_ids), next(_ids)
    sql(f"INSERT INTO \"{CHANGES}\" VALUES ({a}, 'a{a}@example.com')")
    sql(f"INSERT INTO \"{CHANGES}\" VALUES ({b}, 'b{b}@example.com')")
    sql(f"UPDATE \"{CHANGES}\" SET email = 'c{a}@example.com' WHERE id = {a}")
    return 3


TestPostgresSourceConformance = source_suite(
    PostgresSource,
    config=source_config,
    stream=PEOPLE,
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(ROWS)],
    bad_config={"port": 0, "sslmode": "sometimes"},
    failing_config={"url": BAD_URL},
    batch_rows=100,
    memory_stream=BIG,
    changes=make_changes,
    changes_stream=CHANGES,
    changes_config=changes_config,
)


def dest_config(ctx: SuiteContext) -> dict[str, Any]:
    """Table ``contacts`` whose CHECK refuses e-mails without '@', created on first use."""
    sql = ctx.fixture("sql")
    sql(f'CREATE TABLE IF NOT EXISTS "{CONTACTS}" (id text PRIMARY KEY, '
        "email text CHECK (email LIKE '%@%'), name text, ltv double precision)")
    return {"url": ctx.fixture("pg_url"), "tables": {CONTACTS: {"key": "id"}},
            "batch_size": 500}


def read_back(ctx: SuiteContext, dest: Any, obj: str) -> list[dict[str, Any]]:
    rows = ctx.fixture("sql")(f'SELECT id, email, name, ltv FROM "{obj}"') or []
    return [dict(zip(("id", "email", "name", "ltv"), r, strict=True)) for r in rows]


SAMPLES = [
    {"id": "c-1", "email": "ana@example.com", "name": "Ana Müller", "ltv": 10.5},
    {"id": "c-2", "email": "bo@example.com", "name": "Bo", "ltv": 0.0},
]

TestPostgresDestinationConformance = destination_suite(
    PostgresDestination,
    config=dest_config,
    object=CONTACTS,
    sample_records=SAMPLES,
    rejected_record={"id": "c-bad", "email": "not-an-email", "name": "x", "ltv": 1.0},
    match_key="id",
    bad_config={"batch_size": 0, "port": "5432"},
    failing_config={"url": BAD_URL},
    read_back=read_back,
    text_fields=["name"],
)

"""conn's conformance suites for the ``mysql`` source and destination
(conn.testing.conformance), against the local MariaDB server of ``conftest.py``.

Tables get a unique name per test session (other suites may run at the same time) and are
dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conn.testing.conformance import SuiteContext, destination_suite, source_suite
from conn_mysql.destination import MysqlDestination
from conn_mysql.source import MysqlSource

ROWS = 1_000
SUFFIX = uuid.uuid4().hex[:10]
PEOPLE, BIG, CONTACTS = f"conf_people_{SUFFIX}", f"conf_big_{SUFFIX}", f"conf_contacts_{SUFFIX}"
BAD_URL = "mysql://nobody:s3cretPassw0rd-conf@127.0.0.1:1/test"
HEAVY = ["pymysql"]


@pytest.fixture(scope="module", autouse=True)
def _drop_tables(my_url: str) -> Iterator[None]:
    yield
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           database="test", autocommit=True)
    try:
        with conn.cursor() as cur:
            for table in (PEOPLE, BIG, CONTACTS):
                cur.execute(f"DROP TABLE IF EXISTS `{table}`")
    finally:
        conn.close()


def source_config(ctx: SuiteContext) -> dict[str, Any]:
    """Tables ``people`` (1,000 rows, cursor ``updated_at``) and ``big`` (100,000 rows, for
    the memory check), created on first use."""
    sql = ctx.fixture("sql")
    if not sql("SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() "
               "AND table_name = %s", (PEOPLE,)):
        # MariaDB's sequence engine (seq_FROM_to_TO tables) generates the rows.
        sql(f"CREATE TABLE IF NOT EXISTS `{BIG}` (id bigint PRIMARY KEY, label varchar(64)) "
            "CHARACTER SET utf8mb4")
        sql(f"INSERT IGNORE INTO `{BIG}` SELECT seq, CONCAT(REPEAT('x', 40), seq) "
            "FROM seq_1_to_100000")
        sql(f"CREATE TABLE `{PEOPLE}` (id int PRIMARY KEY, email varchar(128) NOT NULL, "
            "name varchar(128), updated_at datetime NOT NULL) CHARACTER SET utf8mb4")
        sql(f"""INSERT INTO `{PEOPLE}` SELECT seq, CONCAT('person', seq, '@example.com'),
                       IF(seq % 7 = 0, NULL, CONCAT('Zoë 東京 ', seq)),
                       TIMESTAMP('2024-01-01') + INTERVAL (seq DIV 3) SECOND
                FROM seq_0_to_{ROWS - 1}""")
    return {"url": ctx.fixture("my_url"), "tables": [PEOPLE, BIG],
            "streams": {PEOPLE: {"cursor": "updated_at"}}}


TestMysqlSourceConformance = source_suite(
    MysqlSource,
    config=source_config,
    stream=PEOPLE,
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(ROWS)],
    bad_config={"port": 0, "connect_timeout": 0},
    failing_config={"url": BAD_URL},
    batch_rows=100,
    memory_stream=BIG,
    heavy_modules=HEAVY,
)


def dest_config(ctx: SuiteContext) -> dict[str, Any]:
    """Table ``contacts`` whose CHECK refuses e-mails without '@', created on first use."""
    ctx.fixture("sql")(f"CREATE TABLE IF NOT EXISTS `{CONTACTS}` (id varchar(64) PRIMARY KEY, "
                       "email varchar(128) CHECK (email LIKE '%@%'), name text, ltv double) "
                       "CHARACTER SET utf8mb4")
    return {"url": ctx.fixture("my_url"), "tables": {CONTACTS: {"key": "id"}},
            "batch_size": 500}


def read_back(ctx: SuiteContext, dest: Any, obj: str) -> list[dict[str, Any]]:
    rows = ctx.fixture("sql")(f"SELECT id, email, name, ltv FROM `{obj}`")
    return [dict(zip(("id", "email", "name", "ltv"), r, strict=True)) for r in rows]


TestMysqlDestinationConformance = destination_suite(
    MysqlDestination,
    config=dest_config,
    object=CONTACTS,
    sample_records=[
        {"id": "c-1", "email": "ana@example.com", "name": "Ana Müller", "ltv": 10.5},
        {"id": "c-2", "email": "bo@example.com", "name": "Bo", "ltv": 0.0},
    ],
    rejected_record={"id": "c-bad", "email": "not-an-email", "name": "x", "ltv": 1.0},
    match_key="id",
    bad_config={"batch_size": 0, "port": "3306"},
    failing_config={"url": BAD_URL},
    read_back=read_back,
    text_fields=["name"],
    heavy_modules=HEAVY,
)

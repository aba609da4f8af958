"""Fixtures: a real PostgreSQL server (started by scripts/ensure-services.sh if needed)
and unique table names, so tests of several engineers can run at once."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

URL = "postgresql://postgres@127.0.0.1:5432/test"
ENSURE = Path(__file__).resolve().parents[4] / "scripts" / "ensure-services.sh"


def _reachable() -> str | None:
    import adbc_driver_postgresql.dbapi as dbapi

    try:
        dbapi.connect(URL).close()
        return None
    except Exception as exc:
        return str(exc)


@pytest.fixture(scope="session")
def pg_url() -> str:
    if _reachable() is not None and ENSURE.exists():
        subprocess.run(["bash", str(ENSURE)], capture_output=True, timeout=60)
    reason = _reachable()
    if reason is not None:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 cannot be reached or started: {reason}")
    return URL


@pytest.fixture
def sql(pg_url: str) -> Iterator:
    """Run SQL on an autocommit side connection: sql("...") returns rows or None."""
    import adbc_driver_postgresql.dbapi as dbapi

    conn = dbapi.connect(pg_url, autocommit=True)

    def run(statement: str, params: tuple = ()) -> list[tuple] | None:
        with conn.cursor() as cur:
            cur.execute(statement, parameters=params or None)
            try:
                return cur.fetchall()
            except Exception:
                return None

    yield run
    conn.close()


@pytest.fixture
def table(sql) -> Iterator[str]:
    """A unique table name, dropped afterwards."""
    names: list[str] = []
    name = f"t_{uuid.uuid4().hex[:12]}"
    names.append(name)
    yield name
    for n in names:
        sql(f'DROP TABLE IF EXISTS "{n}"')


@pytest.fixture
def names(pg_url: str, sql) -> Iterator[Callable[[str], str]]:
    """Unique names for tables, slots and publications; slots, publications and tables
    are dropped at the end (an active slot's walsender is ended first)."""
    level = sql("SELECT current_setting('wal_level')")[0][0]
    if level != "logical":
        pytest.skip(f"PostgreSQL runs with wal_level = {level}; scripts/ensure-services.sh "
                    "switches it to logical")
    made: list[str] = []
    tag = uuid.uuid4().hex[:10]

    def name(kind: str) -> str:
        made.append(f"{kind}{len(made)}_{tag}")
        return made[-1]

    yield name
    for n in made:
        for _ in range(100):
            try:
                active = sql("SELECT active_pid FROM pg_replication_slots "
                             "WHERE slot_name = $1", (n,))
                if not active:
                    break
                if active[0][0] is None:
                    sql("SELECT pg_drop_replication_slot($1)", (n,))
                    break
                sql("SELECT pg_terminate_backend($1)", (active[0][0],))
            except Exception:  # taken again in between (a closing follower): retry
                pass
            time.sleep(0.1)
        sql(f'DROP PUBLICATION IF EXISTS "{n}"')
        sql(f'DROP TABLE IF EXISTS "{n}"')

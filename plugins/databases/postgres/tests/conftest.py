"""Fixtures: a real PostgreSQL server (started by scripts/ensure-services.sh if needed)
and unique table names, so tests of several engineers can run at once."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conn_postgres.testing import names_fixture

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


#: Unique names, their slots, publications and tables dropped afterwards
#: (conn_postgres.testing, which conn's own follow tests use too).
names = names_fixture(pytest.skip)

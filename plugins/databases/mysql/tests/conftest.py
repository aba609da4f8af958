"""Fixtures: the real MariaDB server (started by scripts/ensure-services.sh if needed)
and unique table names, so tests of several engineers can run at once."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

URL = "mysql://root@127.0.0.1:3306/test"
ENSURE = Path(__file__).resolve().parents[4] / "scripts" / "ensure-services.sh"


def _connect():
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           database="test", autocommit=True, charset="utf8mb4",
                           connect_timeout=5)


def _reachable() -> str | None:
    try:
        _connect().close()
        return None
    except Exception as exc:
        return str(exc)


@pytest.fixture(scope="session")
def my_url() -> str:
    if _reachable() is not None and ENSURE.exists():
        subprocess.run(["bash", str(ENSURE)], capture_output=True, timeout=60)
    reason = _reachable()
    if reason is not None:
        pytest.skip(f"MariaDB at 127.0.0.1:3306 cannot be reached or started: {reason}")
    return URL


@pytest.fixture
def sql(my_url: str) -> Iterator:
    """Run SQL on an autocommit side connection; returns the rows."""
    conn = _connect()

    def run(statement: str, params: tuple = ()) -> list[tuple]:
        with conn.cursor() as cur:
            cur.execute(statement, params or None)
            return [tuple(r) for r in cur.fetchall()]

    run.conn = conn  # type: ignore[attr-defined]
    yield run
    conn.close()


@pytest.fixture
def table(sql) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    for n in (name, f"{name}_copy"):
        sql(f"DROP TABLE IF EXISTS `{n}`")

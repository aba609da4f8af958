"""The PostgreSQL store's run locks: scoped to the project's schema, and released when a
run ends, before the next run of the sync asks for them."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from conn.errors import SyncLocked

from tests.conftest import unavailable
from tests.state.conftest import PG_URL, make_store, pg_available

pytestmark = [pytest.mark.services, pytest.mark.one_planner_path]


@pytest.fixture
def schemas():
    if not pg_available():
        unavailable("PostgreSQL not reachable at 127.0.0.1:5432")
    names = [f"conn_test_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    yield names
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for s in names:
            conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")


def test_projects_in_other_schemas_do_not_lock_each_other(tmp_path, schemas):
    """Two projects sharing a database, each with its own schema and a sync of the same
    name: both run at once. (The lock key was the sync's name alone.)"""
    a = make_store("postgres", tmp_path / "a", schemas[0])
    b = make_store("postgres", tmp_path / "b", schemas[1])
    again = make_store("postgres", tmp_path / "c", schemas[0])
    # ... while the same project's second run is still refused.
    with (a.open_sync("customers", "r1"), b.open_sync("customers", "r2"),
          pytest.raises(SyncLocked), again.open_sync("customers", "r3")):
        pass


@pytest.mark.slow
def test_a_run_right_after_another_finds_the_sync_free(tmp_path, schemas):
    """The locks are released when a run ends, not when the server notices its session
    closed: a run started right after another was refused now and then, mostly on a busy
    machine (seen in CI). Two busy processes make the machine busy here: without the
    explicit release this failed in one of two tries."""
    store = make_store("postgres", tmp_path, schemas[0])
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for i in range(100):
            with store.open_sync("s", f"r{i}", partitions=frozenset(range(20))):
                pass
            with store.open_sync("s", f"w{i}"):
                pass
    finally:
        for p in busy:
            p.kill()
            p.wait()

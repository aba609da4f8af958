"""``conn forget`` with the PostgreSQL state backend: the same guarantees (found,
erased, suppressed, purged, receipt), pending erasures retried by the next sync."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import unavailable
from tests.privacy.conftest import clear_hits, make_project, person
from tests.state.conftest import PG_URL, pg_available

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.usefixtures("real_registry")]


@pytest.fixture
def pg_project(tmp_path, server):
    if not pg_available():
        unavailable("PostgreSQL not reachable at 127.0.0.1:5432")
    schema = f"conn_forget_{uuid.uuid4().hex[:10]}"
    state = f'state: {{backend: postgres, url: "{PG_URL}?schema={schema}"}}'
    yield make_project(tmp_path, server, state=state), schema
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_forget_on_postgres_state(pg_project, server, capsys, monkeypatch):
    import psycopg

    project, schema = pg_project
    p = person(4)
    project.sync_all(capsys, monkeypatch)
    server.configure(error_rate=1.0, error_status=503)
    code, out = project.conn(capsys, monkeypatch, "forget", p["email"], "--json")
    assert code == 1, out
    receipt = json.loads(out)
    server.configure(error_rate=0.0)
    reports = project.sync_all(capsys, monkeypatch, "--full-resync")
    people = next(r for r in reports if r["name"] == "people_hook")
    assert people["erasures"] == {"retried": 1, "erased": 1, "pending": 0}
    assert people["consent"]["withheld_by_reason"]["suppressed"] == 1
    assert p["email"] not in server.store
    assert sum(1 for req in server.requests if req.body and p["email"].encode() in req.body
               and b'"delete"' not in req.body) == 1  # the first sync only
    code, out = project.conn(capsys, monkeypatch, "forget", "--status", str(p["id"]),
                             "--json")
    assert code == 0, out
    [done] = json.loads(out)["receipts"]
    assert done["receipt_id"] == receipt["receipt_id"] and done["status"] == "complete"
    with psycopg.connect(PG_URL) as c:
        for table in ("records", "rejections", "runs", "erasures_pending", "ledger",
                      "suppression"):
            text = str(c.execute(f"SELECT * FROM {schema}.{table}").fetchall()).lower()
            assert p["email"].lower() not in text, table
            assert f"'{p['id']}'" not in text, table
    assert clear_hits(project.dir, [p["email"], str(p["id"])]) == []

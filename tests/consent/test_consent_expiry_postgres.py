"""Consent expiry with the people and the consent events in PostgreSQL (timestamptz
columns through the postgres source plugin), through the command line: the documented
boundary (valid up to and including grant time + max_age), a newer withdrawal, an
expired grant under a legal basis, a null grant time, and the counts of conn check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import unavailable

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
NOW = "2026-03-31T12:00:00Z"


@pytest.fixture
def schema() -> Iterator[str]:
    try:
        import psycopg

        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=2)
    except Exception:
        unavailable("PostgreSQL not reachable at 127.0.0.1:5432")
    name = f"conn_expiry_{uuid.uuid4().hex[:10]}"
    with conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"CREATE TABLE {name}.people (id text PRIMARY KEY, email text, "
                     "mkt boolean, mkt_at timestamptz)")
        conn.execute(f"CREATE TABLE {name}.consent_events (customer text, purpose text, "
                     "status text, at timestamptz)")
        conn.execute(f"""INSERT INTO {name}.people VALUES
            ('exact', 'exact@example.com', true, '2024-03-31 14:00:00+02'),
            ('older', 'older@example.com', true, '2024-03-31 11:59:59+00'),
            ('fresh', 'fresh@example.com', true, '2026-01-01 00:00:00+00'),
            ('nulltime', 'nulltime@example.com', true, NULL),
            ('withdrawn', 'withdrawn@example.com', true, '2026-01-01 00:00:00+00')""")
        conn.execute(f"""INSERT INTO {name}.consent_events VALUES
            ('exact', 'service', 'granted', '2025-03-31 12:00:00+00'),
            ('older', 'service', 'granted', '2025-03-31 11:59:59+00'),
            ('fresh', 'service', 'granted', '2026-03-01 00:00:00+00'),
            ('nulltime', 'service', 'granted', '2026-03-01 00:00:00+00'),
            ('withdrawn', 'service', 'granted', '2026-01-01 00:00:00+00'),
            ('withdrawn', 'service', 'withdrawn', '2026-02-01 00:00:00+00')""")
        yield name
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def conn_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONN_NOW": NOW}
    return subprocess.run([sys.executable, "-m", "conn.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_expiry_over_postgres_timestamps(schema: str, tmp_path: Path) -> None:
    doc = {
        "version": 1,
        "sources": {"pg": {"type": "postgres", "config": {"url": PG_URL, "schema": schema}}},
        "destinations": {"out": {"type": "files", "purposes": ["marketing", "service"],
                                 "config": {"path": "out", "objects": {
                                     "contacts": {"identifiers": ["id"]}}}}},
        "consent_sources": {"cs": {"source": "pg", "stream": "consent_events",
                                   "subject": "customer", "timestamp": "at"}},
        "syncs": {"people_out": {
            "source": "pg", "stream": "people", "destination": "out", "object": "contacts",
            "primary_key": "id", "mapping": {"id": "id", "email": "email"},
            "consent": {"columns": {"marketing": "mkt"}, "granted_at": {"marketing": "mkt_at"},
                        "source": "cs",
                        "max_age": {"marketing": "24 months", "service": "P1Y"},
                        "legal_basis": {"service": "contract"}}}},
    }
    (tmp_path / "conn.yml").write_text(yaml.safe_dump(doc))
    check = conn_cli(tmp_path, "check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    [entry] = [c for c in json.loads(check.stdout)["checks"]
               if c["check"] == "consent expiry"]
    # 'older' is expired for marketing (its service grant expired too, but the legal
    # basis lets it pass that purpose).
    assert entry["withheld_by_expiry"] == {"marketing": 1, "service": 0}
    done = conn_cli(tmp_path, "sync", "pg", "out", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rep = json.loads(done.stdout)["syncs"][0]
    assert rep["consent"]["withheld_by_reason"] == {
        "no_record": 0, "expired": 1, "malformed": 1, "denied": 1, "suppressed": 0}
    # Both rows sent hold valid grants; 'older' passes service on the contract basis but
    # is withheld for marketing, so no sent row counts the contract.
    assert rep["consent"]["legal_bases"]["service"] == {"consent": 2}
    per = rep["consent"]["per_purpose"]
    assert per["service"]["withheld"] == {"no_record": 0, "expired": 0, "malformed": 0,
                                          "denied": 1}
    assert per["marketing"]["withheld"] == {"no_record": 0, "expired": 1, "malformed": 1,
                                            "denied": 0}
    sent = sorted(json.loads(line)["id"]
                  for f in (tmp_path / "out").rglob("*.jsonl")
                  for line in f.read_text().splitlines() if line.strip())
    assert sent == ["exact", "fresh"]
    explain = conn_cli(tmp_path, "explain", "older", "--json")
    a = json.loads(explain.stdout)["access_report"]
    [service] = [b for b in a["legal_bases"] if b["purpose"] == "service"]
    assert (service["allowed"], service["legal_basis"], service["decision"]) == \
        (True, "contract", "expired")

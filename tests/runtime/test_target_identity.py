"""A sync's state is bound to what it describes: moving a sync to another destination,
object, match key, stream or query is refused until the run says what the change means
(docs/sync-modes.md, "When a sync's target changes"). Through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_files")

PROJECT = """\
version: 1
sources:
  warehouse: {{type: duckdb, config: {{path: warehouse.duckdb}}}}
destinations:
  staging: {{type: files, config: {{path: staging, materialize: true, fsync: true}}}}
  prod: {{type: files, config: {{path: prod, materialize: true}}}}
syncs:
  people:
    source: warehouse
    stream: customers
    destination: {dest}
    object: records
    primary_key: id
    match_key: id
    mode: mirror
    mapping: {{id: id, email: email}}
"""


def conn(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conn.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("CREATE TABLE customers AS SELECT i AS id, 'u' || i || '@example.com' "
                "AS email FROM range(5) t(i)")
    con.close()
    (tmp_path / "conn.yml").write_text(PROJECT.format(dest="staging"))
    done = conn(tmp_path, "sync", "warehouse", "staging")
    assert done.returncode == 0, done.stderr
    return tmp_path


def current(path: Path) -> list[dict]:
    f = path / "_current" / "records.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


@pytest.mark.slow
def test_a_moved_sync_is_refused_with_the_change_and_the_flags(project):
    (project / "conn.yml").write_text(PROJECT.format(dest="prod"))
    done = conn(project, "sync", "warehouse", "prod", "--json")
    assert done.returncode == 3
    assert "destination: 'staging' -> 'prod'" in done.stderr
    assert "--new-target" in done.stderr and "--same-target" in done.stderr
    # A configuration error names the file and the path in it (README).
    assert "conn.yml: syncs." in done.stderr
    assert current(project / "prod") == []
    # It never started: not a failed run in the history.
    runs = json.loads(conn(project, "runs", "--json").stdout)["runs"]
    assert [r["status"] for r in runs] == ["ok"]


@pytest.mark.slow
def test_new_target_starts_from_scratch_and_keeps_the_old_state_aside(project):
    (project / "conn.yml").write_text(PROJECT.format(dest="prod"))
    preview = conn(project, "sync", "warehouse", "prod", "--dry-run", "--new-target",
                   "--json")
    assert preview.returncode == 0, preview.stderr
    assert json.loads(preview.stdout)["syncs"][0]["inserted"] == 5
    assert conn(project, "sync", "warehouse", "prod").returncode == 3  # dry run kept nothing
    done = conn(project, "sync", "warehouse", "prod", "--new-target", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["syncs"][0]["inserted"] == 5
    assert sorted(r["id"] for r in current(project / "prod")) == [0, 1, 2, 3, 4]
    assert len(current(project / "staging")) == 5  # mirror mode leaves the old one as is
    retired = list((project / ".conn" / "state" / "retired").glob("people.*.duckdb"))
    assert len(retired) == 1
    again = conn(project, "sync", "warehouse", "prod", "--json")
    assert json.loads(again.stdout)["syncs"][0]["unchanged"] == 5


@pytest.mark.slow
def test_same_target_keeps_the_state(project):
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    con.execute("CREATE VIEW customers_v2 AS SELECT * FROM customers")
    con.close()
    (project / "conn.yml").write_text(
        PROJECT.format(dest="staging").replace("stream: customers", "stream: customers_v2"))
    assert conn(project, "sync", "warehouse", "staging").returncode == 3
    done = conn(project, "sync", "warehouse", "staging", "--same-target", "--json")
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)["syncs"][0]
    assert (s["inserted"], s["unchanged"], s["deleted"]) == (0, 5, 0)


@pytest.mark.slow
def test_tuning_and_mode_changes_are_not_a_new_target(project):
    (project / "conn.yml").write_text(
        PROJECT.format(dest="staging").replace("fsync: true", "fsync: false")
        .replace("mode: mirror", "mode: upsert"))
    done = conn(project, "sync", "warehouse", "staging", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["syncs"][0]["unchanged"] == 5


@pytest.mark.slow
def test_a_refused_sync_stops_the_run_before_any_sync_sends_a_row(project):
    """Found by the differential test: the syncs before a refused one had delivered."""
    first = """\
  people_b:
    source: warehouse
    stream: customers
    destination: prod
    object: records
    primary_key: id
    mode: upsert
    mapping: {id: id, email: email}
"""
    text = PROJECT.format(dest="staging").replace("syncs:\n", "syncs:\n" + first)
    (project / "conn.yml").write_text(text)
    done = conn(project, "sync", "warehouse", "prod", "--json")
    assert done.returncode == 0, done.stderr
    # people (after people_b in conn.yml) moves to prod: people_b must not send anything.
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    con.execute("INSERT INTO customers VALUES (9, 'u9@example.com')")
    con.close()
    (project / "conn.yml").write_text(text.replace("destination: staging", "destination: prod"))
    before = (project / "prod" / "records.jsonl").read_text()
    refused = conn(project, "sync", "warehouse", "prod", "--json")
    assert refused.returncode == 3 and "TargetChanged" in refused.stdout
    assert (project / "prod" / "records.jsonl").read_text() == before

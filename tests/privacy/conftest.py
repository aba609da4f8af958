"""A project on a DuckDB warehouse syncing people to a webhook (a loopback FaultServer
keyed on e-mail) and to files, run through the real command line in this process."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conn.plugins import Registry, reset_registry
from conn.testing.http import FaultServer

from tests.cli_in_process import run_cli

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_webhook")
pytest.importorskip("conn_destination_files")

PROJECT = """\
version: 1
sources:
  warehouse: {{type: duckdb, config: {{path: "{warehouse}"}}}}
destinations:
  hook:
    type: webhook
    config:
      url: "{url}/hook"
      check: none
      batch_size: 50
      max_attempts: 1
      objects: [{{name: people, identifiers: [email]}}, {{name: leads, identifiers: [email]}}]
  out:
    type: files
    config: {{path: "{out}", format: jsonl, objects: {{people: {{identifiers: [id]}},
              events: {{identifiers: [id]}}}}}}
{state}
syncs:
  people_hook:
    source: warehouse
    stream: customers
    primary_key: id
    destination: hook
    object: people
    mode: {mode}
    mapping: {{email: email, id: id, name: name}}
  leads_hook:
    source: warehouse
    stream: leads
    primary_key: lead_id
    destination: hook
    object: leads
    mode: insert
    mapping: {{email: contact, lead_id: lead_id}}
  people_files:
    source: warehouse
    stream: customers
    primary_key: id
    destination: out
    object: people
    mode: mirror
    mapping: {{id: id, email: email}}
  events_files:
    source: warehouse
    stream: customers
    primary_key: id
    destination: out
    object: events
    mode: append
    mapping: {{id: id, name: name}}
"""


def person(i: int) -> dict[str, Any]:
    """Row ``i`` of the warehouse: e-mail addresses in mixed case, distinctive names and
    ids (a short id such as 1003 turns up by chance in a DuckDB file's bytes)."""
    return {"id": 73_950_000 + i, "email": f"Person.{i}@Example.org", "name": f"Zqx Person{i}"}


@dataclass
class Project:
    """A project folder (``dir``), its warehouse and file output outside it, and the
    webhook's receiver."""

    dir: Path
    warehouse: Path
    out: Path
    server: FaultServer

    def conn(self, capsys: Any, monkeypatch: Any, *args: str) -> tuple[int, str]:
        """Run ``conn ARGS -p DIR`` in this process: (exit code, stdout)."""
        code, out, err = run_cli(monkeypatch, capsys, *args, "-p", str(self.dir))
        sys.stderr.write(err)
        return code, out

    def sync_all(self, capsys: Any, monkeypatch: Any, *extra: str) -> list[dict[str, Any]]:
        """Every sync once (``conn sync warehouse DEST --json``): the sync reports."""
        reports = []
        for dest in ("hook", "out"):
            code, out = self.conn(capsys, monkeypatch, "sync", "warehouse", dest, "--json",
                                  *extra)
            assert code in (0, 1, 4), out
            reports += json.loads(out)["syncs"]
        return reports


def build_warehouse(path: Path, n: int, leads: list[tuple[str, str]]) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE OR REPLACE TABLE customers (id BIGINT, email VARCHAR, name VARCHAR)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                    [tuple(person(i).values()) for i in range(n)])
    con.execute("CREATE OR REPLACE TABLE leads (lead_id VARCHAR, contact VARCHAR)")
    con.executemany("INSERT INTO leads VALUES (?, ?)", leads)
    con.close()


@pytest.fixture
def real_registry() -> Iterator[None]:
    """The installed plugins (the core's fixture registry holds fakes only)."""
    reset_registry(Registry())
    yield
    reset_registry(Registry(autoload=False))


def make_project(tmp_path: Path, server: FaultServer, *, n: int = 12, mode: str = "upsert",
                 state: str = "") -> Project:
    proj = tmp_path / "project"
    proj.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    warehouse, out = data / "warehouse.duckdb", data / "out"
    # A second stream with the same person under another key (and e-mail spelling).
    build_warehouse(warehouse, n, [("L-1", " person.3@example.ORG "), ("L-2", "lead2@x.org")])
    (proj / "conn.yml").write_text(PROJECT.format(warehouse=warehouse, url=server.url,
                                                  out=out, mode=mode, state=state))
    return Project(proj, warehouse, out, server)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(id_field="email") as srv:
        yield srv


@pytest.fixture
def project(tmp_path: Path, server: FaultServer, real_registry: None) -> Project:
    return make_project(tmp_path, server)


def files_under(folder: Path) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file()]


def clear_hits(folder: Path, needles: list[str]) -> list[str]:
    """Files under ``folder`` whose bytes hold one of ``needles`` (case-insensitive),
    DuckDB files included byte for byte. A needle of digits counts only where no digit
    touches it, so an id is not found inside a longer number."""
    hits = []
    for f in files_under(folder):
        data = f.read_bytes().lower()
        for n in needles:
            pattern = re.escape(n.lower().encode())
            if n.isdigit():
                pattern = rb"(?<![0-9])" + pattern + rb"(?![0-9])"
            if re.search(pattern, data):
                hits.append(f"{f.relative_to(folder)}: {n}")
    return hits

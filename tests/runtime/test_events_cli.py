"""``mode: events`` through the real ``conn`` CLI (docs/sync-modes.md, "Events"): a DuckDB
table of events to the webhook destination on a loopback fault server. Each new or
changed row is one event of the documented shape; a second run sends nothing; a row whose
change is only in an unmapped column sends nothing; a consent-withdrawn person gets no
event; a run killed midway re-sends only the events in flight, with their first ids."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conn.testing.http import FaultServer, Slow

pytest.importorskip("conn_destination_webhook")
pytest.importorskip("conn_source_duckdb")

CONN = [sys.executable, "-m", "conn.cli.main"]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def conn(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CONN, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def report(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert p.stdout, p.stderr
    return json.loads(p.stdout)["syncs"][0]


def write_project(tmp: Path, url: str, *, batch_size: int = 100, concurrency: int = 1,
                  event: str = "{name: feature_failed, time_from: failed_at}") -> None:
    (tmp / "conn.yml").write_text(f"""
sources:
  app: {{type: duckdb, config: {{path: app.duckdb}}}}
destinations:
  hook:
    type: webhook
    purposes: [service]
    config:
      url: "{url}/hook"
      check: none
      batch_size: {batch_size}
      concurrency: {concurrency}
      max_attempts: 1
      objects: [{{name: events, identifiers: [customer_id]}}]
syncs:
  failures:
    source: app
    stream: feature_failed
    destination: hook
    object: events
    mode: events
    event: {event}
    consent: {{columns: {{service: ok}}}}
    mapping:
      customer_id: customer_id
      feature: feature
      row: id
""")


def make_table(tmp: Path, n: int) -> None:
    c = duckdb.connect(str(tmp / "app.duckdb"))
    c.execute("create table feature_failed(id integer primary key, customer_id integer, "
              "feature varchar, failed_at timestamp, ok boolean, note varchar)")
    c.execute(f"""insert into feature_failed select i, 1000 + i % 50, 'export',
                  timestamp '2026-12-01 10:00:00' + to_seconds(i), true, 'n'
                  from range({n}) t(i)""")
    c.close()


def sql(tmp: Path, statement: str) -> None:
    c = duckdb.connect(str(tmp / "app.duckdb"))
    c.execute(statement)
    c.close()


def events_of(server: FaultServer) -> list[dict[str, Any]]:
    return [e for r in server.requests if r.json for e in r.json["records"]]


@pytest.fixture()
def project(tmp_path: Path, fault_server: FaultServer) -> Path:
    make_table(tmp_path, 4)
    sql(tmp_path, "update feature_failed set ok = false where id = 3")  # withdrawn
    write_project(tmp_path, fault_server.url)
    return tmp_path


def test_each_row_is_one_event_of_the_documented_shape(project: Path,
                                                        fault_server: FaultServer) -> None:
    p = conn("sync", "app", "hook", "--json", cwd=project)
    rep = report(p)
    assert (rep["status"], rep["inserted"], rep["consent_denied"]) == ("ok", 3, 1), p.stderr
    [req] = fault_server.requests
    body = req.json
    assert (body["operation"], body["object"], body["match_key"]) == \
        ("event", "events", "customer_id")
    sent = body["records"]
    assert [e["properties"]["row"] for e in sent] == [0, 1, 2]  # id 3 withdrew consent
    first = sent[1]
    assert set(first) == {"id", "name", "occurred_at", "person", "properties"}
    assert first["name"] == "feature_failed"
    assert first["occurred_at"] == "2026-12-01T10:00:01.000Z"
    assert first["person"] == {"customer_id": 1001}
    assert first["properties"] == {"feature": "export", "row": 1}
    assert all(re.fullmatch(r"[0-9a-f]{32}", e["id"]) for e in sent)
    assert all(ISO_UTC.match(e["occurred_at"]) for e in sent)
    # The ids are the records' idempotency keys; webhook-id derives from them.
    assert body["idempotency_keys"] == [e["id"] for e in sent]
    assert req.header("webhook-id", "").startswith("msg_")

    # A second run sends nothing.
    rep = report(conn("sync", "app", "hook", "--json", cwd=project))
    assert (rep["status"], rep["inserted"], rep["updated"], rep["unchanged"]) == \
        ("ok", 0, 0, 3)
    assert len(fault_server.requests) == 1


@pytest.mark.slow
def test_events_fire_on_what_the_mapping_sends_changing(project: Path,
                                                        fault_server: FaultServer) -> None:
    assert report(conn("sync", "app", "hook", "--json", cwd=project))["status"] == "ok"
    ids = {e["properties"]["row"]: e["id"] for e in events_of(fault_server)}
    fault_server.reset()
    # `note` is not mapped: no event. `feature` is: one new event, with a new id.
    sql(project, "update feature_failed set note = 'changed' where id = 0")
    sql(project, "update feature_failed set feature = 'import' where id = 1")
    rep = report(conn("sync", "app", "hook", "--json", cwd=project))
    assert (rep["inserted"], rep["updated"], rep["unchanged"]) == (0, 1, 2)
    [event] = events_of(fault_server)
    assert event["properties"] == {"feature": "import", "row": 1}
    assert event["id"] != ids[1]


@pytest.mark.slow
def test_consent_withdrawn_after_delivery_sends_no_further_event(
        project: Path, fault_server: FaultServer) -> None:
    conn("sync", "app", "hook", "--json", cwd=project)
    fault_server.reset()
    sql(project, "update feature_failed set ok = false, feature = 'x' where id = 2")
    rep = report(conn("sync", "app", "hook", "--json", cwd=project))
    assert (rep["consent_denied"], rep["updated"]) == (2, 0)
    assert fault_server.requests == []


@pytest.mark.slow
def test_name_from_a_column_and_rows_without_time_are_rejected(
        tmp_path: Path, fault_server: FaultServer) -> None:
    make_table(tmp_path, 3)
    sql(tmp_path, "update feature_failed set failed_at = null where id = 2")
    write_project(tmp_path, fault_server.url, event="{name_from: feature, time_from: failed_at}")
    rep = report(conn("sync", "app", "hook", "--json", cwd=tmp_path))
    assert (rep["inserted"], rep["rejected"]) == (2, 1)
    assert [e["name"] for e in events_of(fault_server)] == ["export", "export"]
    assert rep["rejection_reasons"] == {"$occurred_at: required field is empty": 1}


def test_event_config_is_validated(tmp_path: Path, fault_server: FaultServer) -> None:
    make_table(tmp_path, 1)
    write_project(tmp_path, fault_server.url, event="{name: x, name_from: feature}")
    p = conn("check", cwd=tmp_path)
    assert p.returncode != 0
    assert "syncs.failures.event" in p.stderr + p.stdout
    assert "time_from" in p.stderr + p.stdout


@pytest.mark.slow
def test_a_killed_run_resends_only_events_in_flight_with_their_ids(
        tmp_path: Path, fault_server: FaultServer) -> None:
    n, batch, concurrency = 3000, 50, 2
    make_table(tmp_path, n)
    write_project(tmp_path, fault_server.url, batch_size=batch, concurrency=concurrency)
    fault_server.configure(schedule=[Slow(0.05)] * 10_000)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*CONN, "sync", "app", "hook", "--json"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(fault_server.requests) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = events_of(fault_server)
    assert 0 < len(before) < n
    fault_server.configure(schedule=[])
    rep = report(conn("sync", "app", "hook", "--json", cwd=tmp_path))
    assert rep["status"] == "ok", rep
    every = events_of(fault_server)
    first_id: dict[int, str] = {}
    changed = [e for e in every
               if first_id.setdefault(e["properties"]["row"], e["id"]) != e["id"]]
    assert changed == []  # a re-sent event carries its first id
    assert sorted(first_id) == list(range(n))  # every event arrived
    again = len(every) - n
    assert 0 <= again <= batch * concurrency  # at most the requests in flight
    # A third run has nothing left to send.
    assert report(conn("sync", "app", "hook", "--json", cwd=tmp_path))["unchanged"] == n


@pytest.mark.slow
def test_dry_run_shows_the_events_and_sends_nothing(project: Path,
                                                    fault_server: FaultServer) -> None:
    rep = report(conn("sync", "app", "hook", "--dry-run", "--json", cwd=project))
    body = rep["preview"][0]["json"]
    assert (rep["status"], body["operation"]) == ("dry_run", "event")
    assert [e["name"] for e in body["records"]] == ["feature_failed"] * 3
    assert fault_server.requests == []
    # The run after it sends the same ids the preview showed.
    conn("sync", "app", "hook", "--json", cwd=project)
    assert [e["id"] for e in events_of(fault_server)] == [e["id"] for e in body["records"]]

"""An independent check of what docs/realtime.md promises that the other tests do not
already show, through the real CLI and the real local services: the first line of
``conn serve --json``, the series and the /healthz entry a scheduled sync has before
its first run, a paused sync's runs under ``conn serve``, ``ui_disabled``, schedule and
micro-batch errors as ``conn check`` prints them, a ``follow: true`` PostgreSQL sync under
``conn serve`` (its metrics, a run by hand refused), ``conn sync --follow`` in
``mode: events`` (event ids are idempotency keys; an unmapped change fires nothing),
SIGTERM and a second follower, and what a server without ``wal_level = logical`` makes
``conn check`` and the follower say."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from tests import test_follow_postgres
from tests.conftest import unavailable
from tests.follow_kit import eventually, start, stop
from tests.serve.helpers import Serve, conn, metric

pg_testing = pytest.importorskip("conn_postgres.testing")
nats_testing = pytest.importorskip("conn_source_nats.testing")
pytest.importorskip("conn_destination_webhook")
pytest.importorskip("conn_destination_files")
pytest.importorskip("conn_source_duckdb")

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


# --- conn serve on a DuckDB project (no service) ----------------------------------------


def duckdb_project(folder: Path, syncs: dict[str, dict[str, Any]]) -> None:
    """A DuckDB table of three customers, the files destination, and ``syncs`` (each
    from ``customers`` to ``people``)."""
    con = duckdb.connect(str(folder / "warehouse.duckdb"))
    con.execute("CREATE TABLE customers AS SELECT i AS id, 'n' || i AS name FROM range(3) t(i)")
    con.close()
    doc = {"version": 1,
           "sources": {"warehouse": {"type": "duckdb", "config": {"path": "warehouse.duckdb"}}},
           "destinations": {"files": {"type": "files", "config": {"path": "out"}}},
           "syncs": {name: {"source": "warehouse", "stream": "customers",
                            "destination": "files", "object": "people", "primary_key": "id",
                            "mapping": {"id": "id", "name": "name"}, **extra}
                     for name, extra in syncs.items()}}
    (folder / "conn.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")


ROW_SERIES = ("conn_sync_rows_read_total", "conn_sync_rows_sent_total",
              "conn_sync_rows_unchanged_total", "conn_sync_rows_rejected_total",
              "conn_sync_rows_pending_total", "conn_sync_runs_skipped_total",
              "conn_sync_running")


@pytest.mark.slow
def test_serve_before_a_first_run_and_a_paused_sync(tmp_path: Path) -> None:
    # "later" first runs on January 1st: until then its series exist at zero and
    # /healthz shows it idle; "held" is paused: its runs end at once as `paused`.
    duckdb_project(tmp_path, {
        "later": {"schedule": {"cron": "0 0 1 1 *", "timezone": "Europe/Paris"}},
        "held": {"schedule": {"every": "1s"}}})
    paused = conn(tmp_path, "pause", "held")
    assert paused.returncode == 0, paused.stderr
    serve = Serve(tmp_path)
    try:
        serve.wait_for(lambda: serve.named("run_finished", sync="held"))
        m = serve.metrics()
        code, body = serve.get("/healthz")
        ui = serve.get("/")[0]  # the web UI, on by default on a loopback host
    finally:
        exit_code, _ = serve.stop(signal.SIGINT)
    first = json.loads(serve.lines[0])
    assert first["event"] == "serving", serve.lines[0]
    assert {"project", "url", "host", "port", "pid", "drain_seconds", "time"} <= set(first)
    assert (first["host"], first["drain_seconds"], first["pid"]) == \
        ("127.0.0.1", 10, serve.proc.pid)
    assert first["url"] == f"http://127.0.0.1:{first['port']}"
    assert first["time"].endswith("Z")
    later = serve.named("scheduled", sync="later")[0]
    assert later["schedule"] == "cron '0 0 1 1 *' (Europe/Paris)"
    assert later["next_run"]

    for series in ROW_SERIES:  # present, at zero, before any run
        assert (series, (("sync", "later"),)) in m, series
        assert metric(m, series, sync="later") == 0
    assert m[("conn_serve_scheduler_alive", ())] == 1

    assert code == 200
    health = json.loads(body)
    assert health["status"] == "ok" and health["pid"] == serve.proc.pid
    entry = health["syncs"]["later"]
    assert (entry["status"], entry["runs"], entry["skipped"]) == ("idle", 0, 0)
    assert entry["schedule"] == "cron '0 0 1 1 *' (Europe/Paris)" and entry["next_run"]

    assert ui == 200
    assert serve.named("run_finished", sync="held")[0]["status"] == "paused"
    assert not (tmp_path / "out" / "people.jsonl").exists()
    assert exit_code == 0 and serve.named("stopped")[0]["exit_code"] == 0


@pytest.mark.slow
def test_a_non_loopback_host_without_a_token_serves_no_ui(tmp_path: Path,
                                                         monkeypatch) -> None:
    monkeypatch.delenv("CONN_UI_TOKEN", raising=False)
    duckdb_project(tmp_path, {"later": {"schedule": {"cron": "0 0 1 1 *"}}})
    serve = Serve(tmp_path, "--host", "0.0.0.0")
    try:
        # Either event may come first: both are waited for.
        serve.wait_for(lambda: serve.named("ui_disabled") and serve.named("serving"))
        event = serve.named("ui_disabled")[0]
        assert serve.named("serving")[0]["host"] == "0.0.0.0"
        assert serve.get("/healthz")[0] == 200
        ui = serve.get("/")[0]
    finally:
        code, _ = serve.stop()
    assert event["reason"] and ui == 404, ui
    assert code == 0


@pytest.mark.slow
def test_schedule_and_micro_batch_errors_name_the_file_the_path_and_the_expectation(
        tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"schedule": {"every": "15 minutes"}},
         "conn.yml: syncs.health.schedule.every: expected an interval such as 30s, 15m, "
         "1h or 1h30m (units s, m, h, d), got '15 minutes'"),
        ({"schedule": {"cron": "0 8 * * *", "timezone": "Paris"}},
         "conn.yml: syncs.health.schedule.timezone: expected an IANA time zone name such "
         "as UTC or Europe/Paris, got 'Paris'"),
        ({"max_latency_ms": 0}, "conn.yml: syncs.health.max_latency_ms: "),
        ({"max_latency_ms": 3_600_001}, "conn.yml: syncs.health.max_latency_ms: "),
        ({"follow": True, "schedule": {"every": "1m"}}, "conn.yml: syncs.health"),
    ]
    for extra, message in cases:
        duckdb_project(tmp_path, {"health": extra})
        for args in (("check", "--offline"), ("sync", "warehouse", "files")):
            done = conn(tmp_path, *args)
            assert done.returncode == 3, (extra, args, done.stderr)
            assert message in " ".join(done.stderr.split()), (extra, args, done.stderr)
        (tmp_path / "warehouse.duckdb").unlink()
    # within the bounds both load
    duckdb_project(tmp_path, {"health": {"max_latency_ms": 3_600_000, "batch_rows": 1}})
    assert conn(tmp_path, "check", "--offline").returncode == 0


@pytest.mark.slow
def test_replication_settings_are_validated_naming_the_key(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"slot": "s1", "status_interval": 0},
         "replication.status_interval: expected minimum 1, got 0"),
        ({"publication": "p"}, "replication: missing required key 'slot'"),
        ({"slot": "s1", "create_slot": "maybe"}, "replication.create_slot: expected true"),
    ]
    for replication, message in cases:
        pg_project(tmp_path, PG_URL, "t", "s", "http://127.0.0.1:9/hook", RECORDS_SYNC)
        doc = yaml.safe_load((tmp_path / "conn.yml").read_text())
        doc["sources"]["app_db"]["config"]["replication"] = replication
        (tmp_path / "conn.yml").write_text(yaml.safe_dump(doc))
        for args in (("check", "--offline"), ("sync", "app_db", "crm", "--follow")):
            done = cli(tmp_path, *args)
            assert done.returncode == 3, (replication, args, done.stderr)
            assert f"conn.yml: sources.app_db.config.{message}" in done.stderr, done.stderr


# --- PostgreSQL -------------------------------------------------------------------------


# The local server's URL and an autocommit SQL runner: the follow tests' own fixtures.
pg_url, sql = test_follow_postgres.pg_url, test_follow_postgres.sql

names = pg_testing.names_fixture(unavailable)
nats_server, js_stream = nats_testing.fixtures(unavailable)

STREAMING = ("SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r "
             "ON r.pid = s.active_pid WHERE s.slot_name = $1")


def wait_active(sql: Callable[..., Any], slot: str, alive: Callable[[], bool]) -> None:
    """Wait until a walsender streams from ``slot`` (the follower is reading)."""
    def active() -> bool:
        assert alive(), "the follower exited"
        return sql(STREAMING, (slot,)) == [(1,)]

    eventually(active, timeout=60, what=f"slot {slot} active")


def pg_project(folder: Path, url: str, table: str, slot: str, hook_url: str,
               sync: dict[str, Any], objects: list[Any] | None = None) -> None:
    """The source ``app_db`` following ``table`` into the webhook ``crm`` (its default
    objects, or ``objects``), one sync ``failures``."""
    doc = {"version": 1,
           "sources": {"app_db": {"type": "postgres", "config": {
               "url": url, "tables": [table], "replication": {"slot": slot}}}},
           "destinations": {"crm": {"type": "webhook", "config": {
               "url": hook_url, "max_attempts": 3,
               **({"objects": objects} if objects else {})}}},
           "syncs": {"failures": {"source": "app_db", "stream": table, "destination": "crm",
                                  "max_latency_ms": 100, **sync}}}
    (folder / "conn.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conn.cli.main", *args, "-p", str(folder)],
                          capture_output=True, text=True, timeout=120)


EVENTS_SYNC = {"object": "events", "mode": "events", "match_key": "customer_id",
               "event": {"name": "feature_failed", "time_from": "failed_at"},
               "mapping": {"customer_id": "customer_id", "feature": "feature"}}


@pytest.mark.slow
@pytest.mark.services
def test_follow_in_events_mode_sends_each_change_as_an_event_keyed_by_its_id(
        tmp_path: Path, pg_url: str, sql, names, fault_server) -> None:
    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id bigserial PRIMARY KEY, customer_id int NOT NULL, '
        "feature text NOT NULL, note text, failed_at timestamptz DEFAULT now())")
    pg_project(tmp_path, pg_url, t, slot, fault_server.url + "/hook", EVENTS_SYNC,
               [{"name": "events", "identifiers": ["customer_id"]}])
    proc = start(tmp_path, "app_db", "crm")
    try:
        wait_active(sql, slot, lambda: proc.poll() is None)
        # A second follower of the same sync is refused while the first runs.
        second = cli(tmp_path, "sync", "app_db", "crm", "--follow")
        assert second.returncode == 5, second.stderr

        sql(f"INSERT INTO \"{t}\" (customer_id, feature, failed_at) "
            "VALUES (42, 'export', '2026-12-01T10:00:01+00')")
        eventually(lambda: len(fault_server.requests) == 1, what="the event")
        sql(f"UPDATE \"{t}\" SET note = 'seen'")          # not mapped: no event
        sql(f"INSERT INTO \"{t}\" (customer_id, feature) VALUES (7, 'import')")
        eventually(lambda: len(fault_server.requests) == 2, what="the second event")
        sql(f"UPDATE \"{t}\" SET feature = 'export-v2' WHERE customer_id = 42")
        eventually(lambda: len(fault_server.requests) == 3, what="the changed event")
        # A row without a time is rejected with its reason, not sent.
        sql(f"INSERT INTO \"{t}\" (customer_id, feature, failed_at) VALUES (9, 'x', NULL)")
        sql(f"INSERT INTO \"{t}\" (customer_id, feature) VALUES (10, 'last')")
        eventually(lambda: len(fault_server.requests) == 4, what="the event after it")
    finally:
        code, err = stop(proc)
    assert code == 130, err
    bodies = [r.json for r in fault_server.requests]
    events = [rec for b in bodies for rec in b["records"]]
    for b in bodies:
        assert b["operation"] == "event"
        assert [rec["id"] for rec in b["records"]] == b["idempotency_keys"]
    assert [(e["person"], e["properties"]["feature"]) for e in events] == [
        ({"customer_id": 42}, "export"), ({"customer_id": 7}, "import"),
        ({"customer_id": 42}, "export-v2"), ({"customer_id": 10}, "last")]
    assert events[0]["name"] == "feature_failed"
    assert events[0]["occurred_at"] == "2026-12-01T10:00:01.000Z"
    assert len({e["id"] for e in events}) == 4 and events[-1]["person"]["customer_id"] == 10
    # (the state is the follower's while it runs: conn rejected reads it afterwards)
    rejected = cli(tmp_path, "rejected", "failures")
    assert "$occurred_at: required field is empty" in rejected.stdout, rejected.stdout
    runs = json.loads(cli(tmp_path, "runs", "failures", "--json").stdout)["runs"]
    assert "interrupted" in [r["status"] for r in runs], runs


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.serial
def test_a_followed_sync_under_serve_reports_lag_and_latency_and_refuses_a_run_by_hand(
        tmp_path: Path, pg_url: str, sql, names, fault_server) -> None:
    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text)')
    pg_project(tmp_path, pg_url, t, slot, fault_server.url + "/hook",
               {"object": "records", "match_key": "id", "follow": True,
                "mapping": {"id": "id", "status": "status"}})
    serve = Serve(tmp_path)
    try:
        wait_active(sql, slot, lambda: serve.proc.poll() is None)
        sql(f"INSERT INTO \"{t}\" SELECT i, 'new' FROM generate_series(1, 5) i")
        eventually(lambda: len(fault_server.store) == 5, what="the five rows")
        eventually(lambda: metric(serve.metrics(), "conn_sync_rows_sent_total",
                                  sync="failures") == 5, what="rows_sent")
        m = serve.metrics()
        code, body = serve.get("/healthz")
        by_hand = conn(tmp_path, "sync", "app_db", "crm")
    finally:
        exit_code, took = serve.stop()
    assert metric(m, "conn_sync_rows_read_total", sync="failures") == 5
    assert metric(m, "conn_sync_delivery_latency_seconds_count", sync="failures") >= 1
    # The slot's lag reaches /metrics with every committed micro-batch: its WAL bytes
    # (PostgreSQL's flush_lag in seconds is often unknown right after a batch).
    assert ("conn_sync_source_lag_bytes", (("sync", "failures"),)) in m
    assert code == 200 and "failures" in json.loads(body)["syncs"]
    assert by_hand.returncode == 5, by_hand.stderr
    assert f"pid {serve.proc.pid}" in by_hand.stderr
    assert exit_code == 0 and took < 12, serve.err


@pytest.mark.slow
@pytest.mark.services
def test_without_logical_wal_level_check_and_follow_explain_the_fix(
        tmp_path: Path, fault_server) -> None:
    from tests.pg_private import PrivatePostgres

    pg = PrivatePostgres()
    try:
        pg.init()
        with open(pg.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\nwal_level = replica\n")  # PostgreSQL's default
        pg.start()
        import psycopg2

        c = psycopg2.connect(pg.url)
        c.autocommit = True
        c.cursor().execute("CREATE TABLE t (id int PRIMARY KEY, status text)")
        c.close()
        pg_project(tmp_path, pg.url, "t", "conn_t", fault_server.url + "/hook",
                   {"object": "records", "match_key": "id",
                    "mapping": {"id": "id", "status": "status"}})
        check = cli(tmp_path, "check")
        follow = cli(tmp_path, "sync", "app_db", "crm", "--follow")
    finally:
        pg.destroy()
    for done in (check, follow):
        text = " ".join((done.stdout + done.stderr).split())
        assert done.returncode != 0, text
        assert "wal_level" in text and "logical" in text, text
        assert "ALTER SYSTEM SET wal_level = logical" in text and "restart" in text, text
        assert "Traceback" not in text, text


@pytest.mark.slow
@pytest.mark.services
def test_a_followed_queue_under_serve_reports_its_lag_in_messages(
        tmp_path: Path, nats_server, js_stream) -> None:
    from tests.follow_kit import ids, people, queue_project

    queue_project(tmp_path, "nats", {"url": nats_testing.URL, "stream": js_stream,
                                     "durable": "conn-audit"}, follow=True)
    serve = Serve(tmp_path)
    try:
        eventually(lambda: serve.proc.poll() is None and _bound(nats_server, js_stream),
                   timeout=60, what="the follower's pull consumer")
        nats_server.publish(f"{js_stream}.people", people(0, 20))
        eventually(lambda: ids(tmp_path) == set(range(20)), what="20 rows in the files log")
        eventually(lambda: metric(serve.metrics(), "conn_sync_rows_sent_total",
                                  sync="q2f") == 20, what="rows_sent")
        m = serve.metrics()
    finally:
        code, _ = serve.stop()
    assert ("conn_sync_source_lag_messages", (("sync", "q2f"),)) in m
    assert metric(m, "conn_sync_delivery_latency_seconds_count", sync="q2f") >= 1
    assert code == 0, serve.err


def _bound(nats_server: Any, stream: str) -> bool:
    try:
        return nats_server.consumer(stream, "conn-audit").num_waiting > 0
    except Exception:  # the consumer does not exist yet
        return False


@pytest.mark.slow
@pytest.mark.serial
def test_draining_answers_503_and_a_second_signal_exits_130_at_once(
        tmp_path: Path) -> None:
    from conn.testing.http import FaultServer, Slow

    from tests.serve.helpers import make_project

    with FaultServer(schedule=[Slow(60)]) as srv:
        make_project(tmp_path, srv.url, rows=5, files_every="1h", hook_every="1h")
        serve = Serve(tmp_path, "--drain-seconds", "30")
        try:
            serve.wait_for(lambda: len(srv.requests) >= 1)
            serve.proc.send_signal(signal.SIGTERM)
            serve.wait_for(lambda: serve.named("draining"))
            code, body = serve.get("/healthz")
            again, took = serve.stop(signal.SIGTERM)
        finally:
            serve.kill()
    assert serve.named("draining")[0]["bound_seconds"] == 30
    assert (code, json.loads(body)["status"]) == (503, "draining")
    assert again == 130 and took < 5, (again, took, serve.err)


@pytest.mark.slow
def test_a_scheduled_sync_whose_plugin_is_missing_exits_6(tmp_path: Path) -> None:
    duckdb_project(tmp_path, {"later": {"schedule": {"every": "1h"}}})
    doc = yaml.safe_load((tmp_path / "conn.yml").read_text())
    doc["destinations"]["files"]["type"] = "no_such_destination_plugin"
    (tmp_path / "conn.yml").write_text(yaml.safe_dump(doc))
    done = conn(tmp_path, "serve", "--port", "0")
    assert done.returncode == 6, (done.returncode, done.stdout, done.stderr)
    assert "no_such_destination_plugin" in done.stderr


RECORDS_SYNC = {"object": "records", "match_key": "id",
                "mapping": {"id": "id", "status": "status"}}


@pytest.mark.slow
@pytest.mark.services
def test_a_failing_destination_stops_the_follower_with_exit_1(
        tmp_path: Path, pg_url: str, sql, names, fault_server) -> None:
    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text)')
    fault_server.configure(error_rate=1.0, error_status=500)
    pg_project(tmp_path, pg_url, t, slot, fault_server.url + "/hook", RECORDS_SYNC)
    doc = yaml.safe_load((tmp_path / "conn.yml").read_text())
    doc["destinations"]["crm"]["config"]["max_attempts"] = 1
    (tmp_path / "conn.yml").write_text(yaml.safe_dump(doc))
    proc = start(tmp_path, "app_db", "crm")
    try:
        wait_active(sql, slot, lambda: proc.poll() is None)
        sql(f"INSERT INTO \"{t}\" VALUES (1, 'new')")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            stop(proc)
    assert proc.returncode == 1, err.decode()
    assert fault_server.requests and not fault_server.store
    runs = json.loads(cli(tmp_path, "runs", "failures", "--json").stdout)["runs"]
    assert runs[0]["status"] == "failed", runs


@pytest.mark.slow
@pytest.mark.services
def test_truncate_is_a_warning_and_a_new_column_stops_the_follower_with_a_message(
        tmp_path: Path, pg_url: str, sql, names, fault_server) -> None:
    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text)')
    pg_project(tmp_path, pg_url, t, slot, fault_server.url + "/hook", RECORDS_SYNC)
    proc = start(tmp_path, "app_db", "crm")
    try:
        wait_active(sql, slot, lambda: proc.poll() is None)
        sql(f"INSERT INTO \"{t}\" VALUES (1, 'new')")
        eventually(lambda: len(fault_server.store) == 1, what="the insert")
        sql(f'TRUNCATE "{t}"')
        sql(f"INSERT INTO \"{t}\" VALUES (2, 'new')")
        eventually(lambda: len(fault_server.store) == 2, what="the insert after TRUNCATE")
        sql(f'ALTER TABLE "{t}" ADD COLUMN extra text')
        sql(f"INSERT INTO \"{t}\" VALUES (3, 'new', 'x')")
        _, err_bytes = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            stop(proc)
    err = err_bytes.decode()
    assert "TRUNCATE" in err.upper() and "WARNING" in err, err
    assert proc.returncode != 0 and "extra" in err and "Traceback" not in err, err
    assert fault_server.deleted == {} or not fault_server.deleted.get("1")


@pytest.mark.slow
@pytest.mark.services
def test_follow_refuses_a_view(tmp_path: Path, pg_url: str, sql, names,
                               fault_server) -> None:
    t, v, slot = names("t"), names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id int PRIMARY KEY, status text)')
    sql(f'CREATE VIEW "{v}" AS SELECT * FROM "{t}"')
    pg_project(tmp_path, pg_url, v, slot, fault_server.url + "/hook", RECORDS_SYNC)
    try:
        done = cli(tmp_path, "sync", "app_db", "crm", "--follow")
    finally:
        sql(f'DROP VIEW "{v}"')  # (the names fixture drops tables)
    text = " ".join(done.stderr.split())
    assert done.returncode == 3, text
    assert v in text and "Traceback" not in text, text


@pytest.mark.slow
@pytest.mark.services
def test_an_unreachable_queue_fails_at_once_naming_host_and_port_not_the_password(
        tmp_path: Path) -> None:
    from conn.testing.services import free_port

    from tests.follow_kit import queue_project

    port = free_port()
    queue_project(tmp_path, "redis_streams",
                  {"url": f"redis://conn:hunter2-secret@127.0.0.1:{port}/0",
                   "key": "events", "group": "conn"})
    done = cli(tmp_path, "sync", "queue", "landing", "--follow")
    text = done.stdout + done.stderr
    assert done.returncode != 0 and done.returncode != 130, text
    assert f"127.0.0.1:{port}" in text and "hunter2-secret" not in text, text
    assert "Traceback" not in text, text


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.serial
def test_the_walkthrough_payload_and_rows_that_predate_the_slot(
        tmp_path: Path, pg_url: str, sql, names, fault_server) -> None:
    import time

    t, slot = names("t"), names("s")
    sql(f'CREATE TABLE "{t}" (id bigserial PRIMARY KEY, customer_id int NOT NULL, '
        "email text NOT NULL, feature text NOT NULL, "
        "failed_at timestamptz NOT NULL DEFAULT now())")
    sql(f"INSERT INTO \"{t}\" (customer_id, email, feature) VALUES (1, 'old@example.com', 'x')")
    columns = ["id", "customer_id", "email", "feature", "failed_at"]
    pg_project(tmp_path, pg_url, t, slot, fault_server.url + "/hook",
               {"object": "events", "match_key": "id", "mode": "upsert",
                "mapping": {c: c for c in columns}})
    doc = yaml.safe_load((tmp_path / "conn.yml").read_text())
    del doc["syncs"]["failures"]["max_latency_ms"]  # the default, 500
    (tmp_path / "conn.yml").write_text(yaml.safe_dump(doc))
    proc = start(tmp_path, "app_db", "crm")
    try:
        wait_active(sql, slot, lambda: proc.poll() is None)
        # the first start made the publication, named after the slot
        assert sql("SELECT 1 FROM pg_publication WHERE pubname = $1", (slot,)) == [(1,)]
        committed = time.time()
        sql(f"INSERT INTO \"{t}\" (customer_id, email, feature, failed_at) "
            "VALUES (42, 'ana@example.com', 'export', '2026-12-06T15:34:09.123456+00')")
        eventually(lambda: fault_server.requests, what="the insert")
        took = time.time() - committed
    finally:
        code, err = stop(proc)
    assert code == 130, err
    body = fault_server.requests[0].json
    assert {k: body[k] for k in ("sync", "object", "operation", "match_key")} == {
        "sync": "failures", "object": "events", "operation": "upsert", "match_key": "id"}
    # (as docs/realtime.md's walkthrough shows it: the webhook's ISO 8601, "+00:00")
    assert body["records"] == [{"id": 2, "customer_id": 42, "email": "ana@example.com",
                                "feature": "export",
                                "failed_at": "2026-12-06T15:34:09.123456+00:00"}]
    assert len(body["idempotency_keys"]) == 1
    assert took < 3, took  # "about a second later at most", on a shared machine

    # The row that predates the slot was not streamed; a batch run sends it (and only
    # it), and the follower then sends only what changes.
    assert len(fault_server.requests) == 1
    batch = cli(tmp_path, "sync", "app_db", "crm")
    assert batch.returncode == 0, batch.stderr
    assert [r["id"] for r in fault_server.requests[-1].json["records"]] == [1]
    seen = len(fault_server.requests)
    proc = start(tmp_path, "app_db", "crm")
    try:
        wait_active(sql, slot, lambda: proc.poll() is None)
        sql(f"UPDATE \"{t}\" SET feature = 'import' WHERE id = 1")
        eventually(lambda: len(fault_server.requests) > seen, what="the update")
        time.sleep(1)
    finally:
        code, err = stop(proc)
    assert [[r["id"] for r in q.json["records"]] for q in fault_server.requests[seen:]] \
        == [[1]], err

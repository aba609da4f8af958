"""``conn serve`` as docs/realtime.md describes it, the real command in a subprocess:
two syncs on one-second intervals into the files destination and a webhook receiver
(conn.testing.http.FaultServer); a slow or failing receiver never holds up the other
sync; /metrics agrees with what was delivered; /healthz; SIGTERM drains within the bound
with exit 0 and a restart resumes; SIGKILL then restart loses nothing; a second serve is
refused naming the first, and a SIGKILLed one's lock does not block a restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conn.testing.http import FaultServer, Reply, Slow

from tests.serve.helpers import TOKEN, Serve, conn, make_project, metric

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_webhook")
pytest.importorskip("conn_destination_files")


def file_rows(path: Path) -> list[dict]:
    f = path / "out" / "people.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def runs_of(serve: Serve, sync: str, status: str | None = None) -> list[dict]:
    return [e for e in serve.named("run_finished", sync=sync)
            if status is None or e["status"] == status]


@pytest.mark.slow
def test_a_slow_and_failing_receiver_holds_up_only_its_own_sync(tmp_path):
    # The receiver first fails (its answer quotes the token), then takes 2.5 s for each
    # of two requests: the files sync must keep its one-second rhythm meanwhile.
    with FaultServer(schedule=[Reply(503, json={"message": f"bad token {TOKEN}"}),
                               Slow(2.5), Slow(2.5)]) as srv:
        make_project(tmp_path, srv.url, rows=30)
        serve = Serve(tmp_path)
        try:
            serve.wait_for(lambda: runs_of(serve, "to_hook", "failed"))
            serve.wait_for(lambda: runs_of(serve, "to_hook", "ok"), 30)
            # one more run of each after everything was delivered: nothing left to send
            hook_done = len(runs_of(serve, "to_hook"))
            serve.wait_for(lambda: len(runs_of(serve, "to_hook")) > hook_done, 10)
            files_done = len(runs_of(serve, "to_files"))
            serve.wait_for(lambda: len(runs_of(serve, "to_files")) > files_done, 10)
            m = serve.metrics()
            code, body = serve.get("/healthz")
        finally:
            exit_code, took = serve.stop()
        events = serve.events

    # The slow run took about 5 s; the files sync ran every second meanwhile.
    slow = next(e for e in events if e["event"] == "run_finished"
                and e["sync"] == "to_hook" and e["status"] == "ok")
    assert slow["seconds"] >= 4.5
    during = [e for e in runs_of(serve, "to_files", "ok")
              if _t(e) <= _t(slow) and _t(e) >= _t(slow) - slow["seconds"]]
    assert len(during) >= 3, [e["time"] for e in runs_of(serve, "to_files")]
    assert serve.named("run_skipped", sync="to_hook")
    # (a files run takes well under a second; the first, which imports everything, may
    # overrun on a loaded machine)
    assert len(serve.named("run_skipped", sync="to_files")) <= 2

    # The failure was logged redacted, and retried at the next due time.
    failed = runs_of(serve, "to_hook", "failed")[0]
    assert "***" in failed["error"]
    printed = "\n".join(serve.lines + serve.err)
    assert TOKEN not in printed

    # /metrics agrees with what the destinations hold.
    assert len(srv.store) == 30 and len(file_rows(tmp_path)) == 30
    assert metric(m, "conn_sync_rows_sent_total", sync="to_hook") == len(srv.store)
    assert metric(m, "conn_sync_rows_sent_total", sync="to_files") == 30
    assert metric(m, "conn_sync_runs_total", sync="to_hook", status="failed") == 1
    assert metric(m, "conn_sync_runs_total", sync="to_hook", status="ok") >= 2
    assert metric(m, "conn_sync_rows_read_total", sync="to_files") == \
        30 * metric(m, "conn_sync_run_duration_seconds_count", sync="to_files")
    assert metric(m, "conn_sync_rows_unchanged_total", sync="to_hook") >= 30
    assert metric(m, "conn_sync_rows_pending_total", sync="to_hook") == 30
    assert metric(m, "conn_sync_runs_skipped_total", sync="to_hook") >= 1
    assert metric(m, "conn_sync_last_success_timestamp_seconds", sync="to_hook") > 0
    assert metric(m, "conn_serve_scheduler_alive") == 1
    assert ("conn_sync_rows_sent_total", (("sync", "by_hand"),)) not in m

    # /healthz
    assert code == 200
    health = json.loads(body)
    assert health["status"] == "ok" and set(health["syncs"]) == {"to_files", "to_hook"}
    assert health["syncs"]["to_hook"]["last_success"]
    assert health["syncs"]["to_files"]["last_run"]["status"] == "ok"
    assert health["syncs"]["to_hook"]["schedule"] == "every 1s"
    assert serve.named("unscheduled")[0]["syncs"] == ["by_hand"]

    assert exit_code == 0 and took < 12, serve.err
    assert serve.named("stopped")[0]["exit_code"] == 0


def _t(event: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_sigterm_drains_within_the_bound_and_a_restart_resumes(tmp_path):
    # Two requests are answered, the third hangs: SIGTERM must not wait for it.
    with FaultServer(schedule=[None, None, Slow(60)]) as srv:
        make_project(tmp_path, srv.url, rows=30, files_every="1h")
        serve = Serve(tmp_path, "--drain-seconds", "4")
        try:
            serve.wait_for(lambda: len(srv.requests) >= 3)
            # The sync is busy in serve: a run by hand is refused, naming the holder.
            by_hand = conn(tmp_path, "sync", "warehouse", "hook")
            assert by_hand.returncode == 5, by_hand.stderr
            assert f"pid {serve.proc.pid}" in by_hand.stderr
            code, took = serve.stop(signal.SIGTERM)
        finally:
            serve.kill()
        assert code == 0, serve.err
        assert took < 4 + 1.5, took
        assert serve.named("draining")[0]["running"] == ["to_hook"]
        assert runs_of(serve, "to_hook")[-1]["status"] == "interrupted"
        assert serve.named("stopped")[0] == {**serve.named("stopped")[0], "drained": True,
                                              "exit_code": 0}
        runs = json.loads(conn(tmp_path, "runs", "to_hook", "--json").stdout)["runs"]
        # (the refused run by hand is in the history too, as failed)
        assert sorted((r["status"], r["inserted"]) for r in runs) == [("failed", 0),
                                                                      ("interrupted", 20)]
        assert len(srv.store) == 20

        # A restart sends the ten rows that were not acknowledged, and only those.
        again = Serve(tmp_path)
        try:
            done = again.wait_for(lambda: runs_of(again, "to_hook", "ok"))[0]
        finally:
            again.stop()
        assert done["rows"]["sent"] == 10 and done["rows"]["unchanged"] == 20
        assert len(srv.store) == 30


@pytest.mark.slow
def test_sigkill_mid_run_then_restart_loses_nothing(tmp_path):
    with FaultServer(delay=0.15) as srv:
        make_project(tmp_path, srv.url, rows=200, files_every="1h", hook_every="1s")
        first = Serve(tmp_path)
        first.wait_for(lambda: len(srv.requests) >= 5)
        first.kill()  # SIGKILL: no drain, the lock file stays behind
        assert first.proc.returncode == -signal.SIGKILL
        kept = len(srv.store)
        assert 0 < kept < 200
        srv.configure(delay=0.0)
        again = Serve(tmp_path)
        try:
            again.wait_for(lambda: runs_of(again, "to_hook", "ok"))
        finally:
            again.stop()
    assert sorted(srv.store, key=int) == [str(i) for i in range(200)]
    # Only the request in flight at the kill (concurrency 1, 10 records) came twice.
    assert sum(n - 1 for n in srv.arrivals.values()) <= 10


@pytest.mark.slow
def test_a_second_serve_is_refused_naming_the_first_and_a_killed_ones_lock_is_stale(
        tmp_path):
    with FaultServer() as srv:
        make_project(tmp_path, srv.url, rows=5, files_every="1h", hook_every="1h")
        first = Serve(tmp_path, json_lines=False)  # plain lines when piped
        try:
            port = first.port
            assert port > 0
            second = conn(tmp_path, "serve", "--port", "0")
            assert second.returncode == 5, second.stderr
            assert f"pid {first.proc.pid}" in second.stderr
            assert "already running for this project" in second.stderr
            assert f"127.0.0.1:{port}" in second.stderr
            # (the port is taken: a clear refusal, not a traceback)
            (tmp_path / "other").mkdir()
            (tmp_path / "other" / "conn.yml").write_text((tmp_path / "conn.yml").read_text())
            (tmp_path / "other" / "warehouse.duckdb").write_bytes(
                (tmp_path / "warehouse.duckdb").read_bytes())
            taken = conn(tmp_path / "other", "serve", "--port", str(port))
            assert taken.returncode == 3, taken.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr
            assert any(" scheduled sync=to_hook " in x for x in first.lines)
            assert any(" unscheduled syncs=by_hand " in x for x in first.lines)
        finally:
            first.kill()
        third = Serve(tmp_path)
        try:
            assert third.port > 0
            assert third.get("/healthz")[0] == 200
        finally:
            code, _ = third.stop(signal.SIGINT)
        assert code == 0, third.err


def test_help_and_a_project_without_schedules(tmp_path):
    shown = conn(tmp_path, "serve", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    for needle in ("schedule:", "/healthz", "/metrics", "--port", "--drain-seconds",
                   "SIGTERM", "skipped", "Exit codes", "--json", "docs/realtime.md"):
        assert needle in text, needle
    with FaultServer() as srv:
        make_project(tmp_path, srv.url)
    text = (tmp_path / "conn.yml").read_text()
    (tmp_path / "conn.yml").write_text(
        "\n".join(x for x in text.splitlines() if "schedule:" not in x) + "\n")
    done = conn(tmp_path, "serve", "--port", "0")
    assert done.returncode == 3
    assert "no sync has a 'schedule:'" in done.stderr

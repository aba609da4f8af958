"""The scheduler and the job interface as docs/realtime.md describes them, in process:
a slow job never holds up another, a job due while still running is skipped and counted,
a failing job is retried at its next due time with its error redacted, a continuous job
runs until the stop request and reports lag, and ``/healthz`` answers 503 once the
scheduler thread is dead."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from conn import secrets
from conn.serve.http import StatusServer
from conn.serve.jobs import ContinuousJob, Job, Outcome
from conn.serve.metrics import Metrics
from conn.serve.scheduler import Scheduler
from prometheus_client.parser import text_string_to_metric_families


class Every(Job):
    """Due at start, then every ``period`` seconds; each run takes ``takes`` seconds."""

    def __init__(self, name: str, period: float, takes: float = 0.0,
                 fail: str | None = None) -> None:
        super().__init__(name)
        self.period, self.takes, self.fail = period, takes, fail
        self.starts: list[float] = []
        self.planned = False

    def next_due(self, now: datetime) -> datetime:
        first, self.planned = not self.planned, True
        return now if first else now + timedelta(seconds=self.period)

    def run(self, stop: threading.Event) -> Outcome:
        self.starts.append(time.monotonic())
        stop.wait(self.takes)
        if self.fail:
            raise RuntimeError(self.fail)
        return Outcome("ok", self.takes, {"read": 2, "sent": 2})


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(metrics.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def run_for(seconds: float, jobs: list[Job]) -> tuple[Scheduler, list, threading.Event]:
    events: list[tuple[str, dict]] = []
    stop = threading.Event()
    sched = Scheduler(jobs, Metrics(), stop, lambda e, **f: events.append((e, f)))
    sched.plan()
    sched.start()
    time.sleep(seconds)
    stop.set()
    assert sched.drain(5)
    return sched, events, stop


def test_a_slow_job_never_holds_up_another_and_its_overlaps_are_skipped():
    slow, fast = Every("slow", 0.1, takes=1.0), Every("fast", 0.1)
    sched, events, _ = run_for(1.5, [slow, fast])
    assert len(fast.starts) >= 8, fast.starts
    assert len(slow.starts) <= 2
    skipped = sched.states["slow"].skipped
    assert skipped >= 5
    assert [e for e, f in events if e == "run_skipped" and f["sync"] == "slow"] \
        == ["run_skipped"] * skipped
    assert sched.states["fast"].skipped == 0
    m = samples(sched.metrics)
    assert m[("conn_sync_runs_skipped_total", (("sync", "slow"),))] == skipped
    assert m[("conn_sync_runs_total", (("status", "ok"), ("sync", "fast")))] \
        == len(fast.starts)
    assert m[("conn_sync_rows_sent_total", (("sync", "fast"),))] == 2 * len(fast.starts)


def test_a_failing_job_is_retried_at_its_next_due_time_and_its_error_redacted():
    secrets.register("hunter2-secret")
    bad = Every("bad", 0.2, fail="token hunter2-secret refused")
    sched, events, _ = run_for(0.7, [bad])
    assert len(bad.starts) >= 3
    gaps = [b - a for a, b in zip(bad.starts, bad.starts[1:], strict=False)]
    assert all(g >= 0.15 for g in gaps), gaps  # retried when due, not in a loop
    finished = [f for e, f in events if e == "run_finished"]
    assert {f["status"] for f in finished} == {"failed"}
    assert "hunter2" not in json.dumps(finished)
    assert "***" in finished[0]["error"]
    health = sched.health()["bad"]
    assert health["last_run"]["status"] == "failed" and health["last_success"] is None
    assert "hunter2" not in json.dumps(health)


class Stream(ContinuousJob):
    """A continuous job: a micro-batch every 50 ms until stopped."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__("stream")
        self.metrics, self.batches, self.runs = metrics, 0, 0

    def run(self, stop: threading.Event) -> Outcome:
        self.runs += 1
        while not stop.wait(0.05):
            self.batches += 1
            self.metrics.progress(self.name, {"read": self.batches, "sent": self.batches})
            self.metrics.set_source_lag(self.name, 0.25)
            self.metrics.observe_latency(self.name, 0.1)
        return Outcome("interrupted", rows={"read": self.batches, "sent": self.batches})


def test_a_continuous_job_runs_once_until_stopped_and_reports_lag():
    metrics = Metrics()
    job = Stream(metrics)
    stop = threading.Event()
    events: list[tuple[str, dict]] = []
    sched = Scheduler([job], metrics, stop, lambda e, **f: events.append((e, f)))
    sched.plan()
    sched.start()
    time.sleep(0.6)
    assert sched.running() == ["stream"]
    m = samples(metrics)
    assert m[("conn_sync_source_lag_seconds", (("sync", "stream"),))] == 0.25
    assert m[("conn_sync_delivery_latency_seconds_count", (("sync", "stream"),))] >= 5
    stop.set()
    assert sched.drain(2)
    assert job.runs == 1 and sched.states["stream"].skipped == 0
    assert samples(metrics)[("conn_sync_rows_sent_total", (("sync", "stream"),))] \
        == job.batches
    assert [e for e, _ in events] == ["run_started", "run_finished"]


def test_a_failing_continuous_job_restarts_with_a_growing_backoff():
    job = Stream(Metrics())
    now = datetime(2026, 1, 1)
    assert job.next_due(now) == now
    for failures, wait in ((1, 1), (2, 2), (3, 4), (8, 60)):
        job.failures = 0
        for _ in range(failures):
            job.ended(Outcome("failed"))
        assert job.next_due(now) == now + timedelta(seconds=wait)
    job.ended(Outcome("ok"))
    assert job.next_due(now) == now


def test_drain_reports_a_run_that_ignores_the_stop_request():
    class Deaf(Every):
        def run(self, stop: threading.Event) -> Outcome:
            time.sleep(1.0)
            return Outcome("ok")

    stop = threading.Event()
    sched = Scheduler([Deaf("deaf", 10)], Metrics(), stop, lambda e, **f: None)
    sched.plan()
    sched.start()
    time.sleep(0.2)
    stop.set()
    assert not sched.drain(0.3)
    assert sched.drain(3)


def test_healthz_is_503_once_the_scheduler_thread_is_dead():
    class Broken(Every):
        calls = 0

        def next_due(self, now: datetime) -> datetime:
            self.calls += 1
            if self.calls == 3:  # at its second start, a second after the first
                raise ValueError("a bug")
            return super().next_due(now)

    stop = threading.Event()
    events: list[tuple[str, dict]] = []
    sched = Scheduler([Broken("b", 1.0), Every("ok", 1.0)], Metrics(), stop,
                      lambda e, **f: events.append((e, f)))
    server = StatusServer("127.0.0.1", 0, sched.metrics, sched.status).start()
    try:
        url = server.url + "/healthz"
        sched.plan()
        sched.start()
        body = json.loads(urllib.request.urlopen(url, timeout=5).read())
        assert body["status"] == "ok" and set(body["syncs"]) == {"b", "ok"}
        deadline = time.monotonic() + 5
        while sched.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            urllib.request.urlopen(url, timeout=5)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert json.loads(exc.read())["status"] == "scheduler_dead"
        assert any(e == "scheduler_failed" for e, _ in events)
        assert samples(sched.metrics)[("conn_serve_scheduler_alive", ())] == 0
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as r:
            assert b"conn_sync_runs_total" in r.read()
    finally:
        stop.set()
        server.close()

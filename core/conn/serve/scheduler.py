"""When jobs run: one scheduler thread decides, each run gets a worker thread of its own.

Threads rather than processes: a run spends its time in Arrow, DuckDB and sockets, which
release the GIL; every sync has its own state file and lock (``.conn/state/<sync>.duckdb``,
``.conn/locks/<sync>.lock``), the run history takes a process-wide lock, and the stop
request that drains runs (:data:`conn.interrupt.requested`) is one event every thread of
the process sees. A slow or failing destination therefore holds up only its own sync's
worker; the scheduler thread never waits for a run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conn import secrets
from conn.serve.jobs import ContinuousJob, Job, Outcome
from conn.serve.metrics import Metrics

log = logging.getLogger("conn.serve")

#: Longest the scheduler sleeps between looks at the clock and the stop request, seconds.
TICK = 0.2

Emit = Callable[..., None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z") if t else None


@dataclass
class JobState:
    """What ``/healthz`` tells about one job."""

    schedule: str
    running: bool = False
    next_due: datetime | None = None
    runs: int = 0
    skipped: int = 0
    last_run: dict[str, Any] | None = None
    last_success: datetime | None = None
    started: datetime | None = None
    threads: list[threading.Thread] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"status": "running" if self.running else "idle", "schedule": self.schedule,
                "next_run": _iso(self.next_due), "runs": self.runs, "skipped": self.skipped,
                "last_run": self.last_run, "last_success": _iso(self.last_success)}


class Scheduler:
    """Starts each job when it is due, in its own thread, never twice at once.

    ``stop``: once set, nothing more starts and :meth:`drain` waits for the runs in
    flight; ``emit(event, **fields)``: what to print; ``clock``: now, in UTC."""

    def __init__(self, jobs: list[Job], metrics: Metrics, stop: threading.Event,
                 emit: Emit, clock: Callable[[], datetime] = utcnow) -> None:
        self.jobs, self.metrics, self.stop, self.emit, self.clock = (jobs, metrics, stop,
                                                                      emit, clock)
        self.states = {j.name: JobState(j.describe()) for j in jobs}
        self._due: dict[str, datetime | None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conn-serve-scheduler",
                                        daemon=True)
        self.crashed: BaseException | None = None
        for j in jobs:
            metrics.declare(j.name)

    # --- lifecycle ----------------------------------------------------------------------

    def plan(self) -> None:
        """Decide every job's first start (before :meth:`start`, to print them)."""
        now = self.clock()
        with self._lock:
            for j in self.jobs:
                self._set_due(j, j.next_due(now))

    def start(self) -> None:
        """Start the scheduler thread (after :meth:`plan`)."""
        self.metrics.scheduler_alive.set(1)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.crashed is None

    def running(self) -> list[str]:
        with self._lock:
            return [n for n, s in self.states.items() if s.running]

    def drain(self, timeout: float) -> bool:
        """After ``stop`` is set: wait up to ``timeout`` seconds for the scheduler and
        every run in flight to end. True when they did."""
        self._wake.set()
        deadline = time.monotonic() + timeout  # not self.clock(): tests may fix that one
        if self._thread.ident is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = [t for s in self.states.values() for t in s.threads]
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive() and not any(t.is_alive() for t in threads)

    def health(self) -> dict[str, Any]:
        """Each job's state, by name."""
        with self._lock:
            return {name: s.as_dict() for name, s in self.states.items()}

    def status(self) -> tuple[bool, str, dict[str, Any]]:
        """What ``/healthz`` answers: (healthy, ``ok`` | ``draining`` |
        ``starting`` | ``scheduler_dead``, :meth:`health`)."""
        if self.stop.is_set():
            return False, "draining", self.health()
        if self._thread.ident is None:
            return False, "starting", self.health()
        if not self.alive:
            return False, "scheduler_dead", self.health()
        return True, "ok", self.health()

    # --- the scheduler thread -----------------------------------------------------------

    def _set_due(self, job: Job, due: datetime | None) -> None:
        self._due[job.name] = due
        self.states[job.name].next_due = due

    def _loop(self) -> None:
        try:
            while not self.stop.is_set():
                now = self.clock()
                for job in self.jobs:
                    self._tick(job, now)
                with self._lock:
                    dues = [d for d in self._due.values() if d is not None]
                wait = min([(d - self.clock()).total_seconds() for d in dues] + [TICK])
                self._wake.wait(max(0.0, wait))
                self._wake.clear()
        except BaseException as exc:  # a bug: /healthz answers 503 from now on
            self.crashed = exc
            log.error("the scheduler stopped: %s", secrets.redact(f"{type(exc).__name__}: "
                                                                   f"{exc}"))
            self.emit("scheduler_failed", error=secrets.redact(f"{type(exc).__name__}: "
                                                                f"{exc}"))
        finally:
            self.metrics.scheduler_alive.set(0)

    def _tick(self, job: Job, now: datetime) -> None:
        with self._lock:
            due, state = self._due.get(job.name), self.states[job.name]
            if due is None or due > now or self.stop.is_set():
                return
            if state.running:
                # A scheduled sync still going when due again: not started twice.
                state.skipped += 1
                self._set_due(job, job.next_due(now))
                skipped = True
            else:
                state.running, state.started = True, now
                # A continuous job's next start is decided when it returns.
                self._set_due(job, None if job.continuous else job.next_due(now))
                thread = threading.Thread(target=self._work, args=(job,), daemon=True,
                                          name=f"conn-serve-{job.name}")
                state.threads = [t for t in state.threads if t.is_alive()] + [thread]
                skipped = False
            next_run = _iso(state.next_due)
        if skipped:
            self.metrics.run_skipped(job.name)
            self.emit("run_skipped", sync=job.name, reason="the previous run is still "
                      "going", next_run=next_run)
            return
        self.metrics.run_started(job.name)
        self.emit("run_started", sync=job.name)
        thread.start()

    # --- a worker thread ----------------------------------------------------------------

    def _work(self, job: Job) -> None:
        try:
            outcome = job.run(self.stop)
        except BaseException as exc:  # a job's bug must not take the process down
            text = secrets.redact(f"{type(exc).__name__}: {exc}")
            log.error("job %s raised %s", job.name, text)
            outcome = Outcome("failed", error=text)
        self.metrics.run_finished(job.name, outcome.status, outcome.seconds, outcome.rows,
                                  outcome.withheld)
        now = self.clock()
        with self._lock:
            state = self.states[job.name]
            state.running = False
            state.runs += 1
            state.last_run = {"status": outcome.status, "run_id": outcome.run_id,
                              "started": _iso(state.started), "finished": _iso(now),
                              "seconds": round(outcome.seconds, 3), "rows": outcome.rows,
                              "error": outcome.error}
            if outcome.status in ("ok", "rejected"):
                state.last_success = now
            if isinstance(job, ContinuousJob):
                job.ended(outcome)
            if job.continuous and not self.stop.is_set():
                self._set_due(job, job.next_due(now))
            next_run = _iso(state.next_due) if not self.stop.is_set() else None
        self.emit("run_finished", sync=job.name, status=outcome.status,
                  seconds=round(outcome.seconds, 3), rows=outcome.rows,
                  withheld=sum(outcome.withheld.values()), error=outcome.error,
                  next_run=next_run)
        self._wake.set()

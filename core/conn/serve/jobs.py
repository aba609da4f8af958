"""What ``conn serve`` runs: jobs.

A :class:`Job` has a ``name``, ``next_due(now)`` (when it should start next) and
``run(stop)`` (do the work; return an :class:`Outcome`). The scheduler starts each job in
its own worker thread when it is due, never twice at once, and asks ``next_due`` again
after each start (or skip). Two kinds:

* **Scheduled** (:class:`ScheduledSyncJob`): a batch sync with a ``schedule:``. ``run``
  is one ``conn sync`` run of that sync and returns when it ends. When it is due while
  still running, that start is skipped and counted (``conn_sync_runs_skipped_total``).
* **Continuous** (:class:`ContinuousJob`, ``continuous = True``): a streaming sync
  (:class:`FollowJob`, a sync with ``follow: true``).
  ``run(stop)`` runs until ``stop`` is set, delivering micro-batches; it reports each
  one with ``ctx.metrics.progress(name, totals)`` and sets
  ``ctx.metrics.set_source_lag(name, seconds)`` (and ``observe_latency``). ``next_due``
  is "now" at start and after a clean return; after a failure it backs off (1 s doubling
  to 60 s). Continuous jobs are never counted as skipped.

A new kind plugs in without touching the scheduler: write a factory
``factory(sync, ctx) -> Job | None`` (None: not mine) and :func:`register_job_kind` it;
:func:`jobs_for` asks every factory, newest first, for each sync of the project.

``stop`` is :data:`conn.interrupt.requested` in ``conn serve``: the event SIGTERM and
SIGINT set, which every part of a run already watches (no further batch is read, no
further request sent, HTTP retries stop waiting, answers in flight are committed).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from conn import secrets
from conn.errors import ConfigError, ConnError
from conn.runtime.runner import RunOptions, run_syncs
from conn.serve.metrics import Metrics, report_rows

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig
    from conn.config.schedule import Schedule
    from conn.plugins import Registry

log = logging.getLogger("conn.serve")


@dataclass
class Outcome:
    """How one run of a job ended. ``status``: ``ok``, ``rejected``, ``failed``,
    ``interrupted`` or ``refused`` (the configuration stopped it before it read a row);
    ``rows``: totals by :data:`conn.serve.metrics.ROW_FIELDS`; ``withheld``: rows the
    consent gate withheld, by reason; ``error``: redacted."""

    status: str
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    withheld: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    run_id: str | None = None


@dataclass
class JobContext:
    """What jobs are made with: the project, its plugins, the metrics to report to."""

    project: Project
    registry: Registry
    metrics: Metrics


class Job(ABC):
    """Something ``conn serve`` runs (see the module docstring)."""

    #: A continuous job runs until stopped; a scheduled one returns after each run.
    continuous: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def next_due(self, now: datetime) -> datetime | None:
        """When to start next (UTC), given that it is ``now``; None: never again."""

    @abstractmethod
    def run(self, stop: threading.Event) -> Outcome:
        """Do the work, on a worker thread; return promptly once ``stop`` is set."""

    def describe(self) -> str:
        """When it runs, for people ("every 15m", "continuous")."""
        return "continuous" if self.continuous else "scheduled"


class ScheduledSyncJob(Job):
    """A sync with a ``schedule:``: one ``conn sync`` run each time it is due."""

    def __init__(self, sync: SyncConfig, ctx: JobContext) -> None:
        super().__init__(sync.name)
        assert sync.schedule is not None
        self.sync, self.ctx = sync, ctx
        self.schedule: Schedule = sync.schedule
        self._anchor: datetime | None = None

    def next_due(self, now: datetime) -> datetime:
        if self._anchor is None:
            self._anchor = self.schedule.first_after_start(now)
            return self._anchor
        return self.schedule.next_after(self._anchor, now)

    def describe(self) -> str:
        return self.schedule.describe()

    def run(self, stop: threading.Event) -> Outcome:
        metrics, name = self.ctx.metrics, self.name

        def progress(report: Any, counts: dict[str, Any]) -> None:
            metrics.progress(name, report_rows(report))

        started = time.monotonic()
        try:
            report = run_syncs(self.ctx.project, [self.sync], self.ctx.registry,
                               RunOptions(), progress)
        except ConfigError as exc:
            return Outcome("refused", time.monotonic() - started,
                           error=secrets.redact(str(exc)))
        except ConnError as exc:  # the state store could not be opened, say
            return Outcome("failed", time.monotonic() - started,
                           error=secrets.redact(str(exc)))
        metrics.alerts_sent(report.alerts)
        if not report.syncs:  # stopped before the sync started
            return Outcome("interrupted", time.monotonic() - started)
        rep = report.syncs[0]
        withheld = dict((rep.consent or {}).get("withheld_by_reason") or {})
        unexplained = rep.consent_denied - sum(withheld.values())
        if unexplained > 0:  # the run stopped before the gate summed up its reasons
            withheld["unknown"] = withheld.get("unknown", 0) + unexplained
        return Outcome(rep.status, rep.seconds, report_rows(rep), withheld, rep.error,
                       rep.run_id)


class ContinuousJob(Job):
    """Base of a job that runs until stopped (a streaming sync): subclasses implement
    :meth:`run`, which must return soon after ``stop`` is set. Restarted at once after a
    clean return, after a failure with a backoff of 1 s doubling up to 60 s."""

    continuous = True
    #: Longest wait before restarting a job that keeps failing, seconds.
    MAX_BACKOFF = 60.0

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.failures = 0

    def next_due(self, now: datetime) -> datetime:
        if not self.failures:
            return now
        return now + timedelta(seconds=min(self.MAX_BACKOFF, 2.0 ** (self.failures - 1)))

    def ended(self, outcome: Outcome) -> None:
        """Called by the scheduler after each return of :meth:`run`. A paused sync
        (``conn pause``) backs off as a failing one does: it is looked at again within a
        minute, so a resume takes effect without a restart."""
        self.failures = self.failures + 1 if outcome.status in ("failed", "paused") else 0


class FollowJob(ContinuousJob):
    """A sync with ``follow: true``: :func:`conn.runtime.streaming.follow` until stopped,
    each committed micro-batch reported to the metrics (rows, delivery latency, source
    lag)."""

    def __init__(self, sync: SyncConfig, ctx: JobContext) -> None:
        super().__init__(sync.name)
        self.sync, self.ctx = sync, ctx

    def describe(self) -> str:
        return "continuously (follow)"

    def run(self, stop: threading.Event) -> Outcome:
        from conn.runtime.streaming import follow

        metrics, name = self.ctx.metrics, self.name

        def on_batch(report: Any, info: dict[str, Any]) -> None:
            metrics.progress(name, report_rows(report))
            for seconds in info.get("latencies") or ():
                metrics.observe_latency(name, seconds)
            lag = info.get("lag")
            if lag is not None:
                metrics.set_source_lag_figures(name, lag)

        started = time.monotonic()
        try:
            rep = follow(self.ctx.project, self.name, stop, on_batch,
                         registry=self.ctx.registry, on_alerts=metrics.alerts_sent)
        except ConfigError as exc:
            return Outcome("refused", time.monotonic() - started,
                           error=secrets.redact(str(exc)))
        except ConnError as exc:
            return Outcome("failed", time.monotonic() - started,
                           error=secrets.redact(str(exc)))
        withheld = dict((rep.consent or {}).get("withheld_by_reason") or {})
        return Outcome(rep.status, rep.seconds, report_rows(rep), withheld, rep.error,
                       rep.run_id)


#: ``factory(sync, ctx) -> Job | None``: makes the job of a sync it knows how to run.
JobFactory = Callable[["SyncConfig", JobContext], "Job | None"]


def scheduled_sync(sync: SyncConfig, ctx: JobContext) -> Job | None:
    """The factory of batch syncs with a ``schedule:``."""
    return ScheduledSyncJob(sync, ctx) if sync.schedule is not None else None


def followed_sync(sync: SyncConfig, ctx: JobContext) -> Job | None:
    """The factory of streaming syncs (``follow: true``)."""
    return FollowJob(sync, ctx) if sync.follow else None


_FACTORIES: list[JobFactory] = [followed_sync, scheduled_sync]


def register_job_kind(factory: JobFactory) -> None:
    """Add a kind of job; it is asked before the kinds registered earlier."""
    if factory not in _FACTORIES:
        _FACTORIES.insert(0, factory)


def jobs_for(project: Project, ctx: JobContext) -> tuple[list[Job], list[str]]:
    """The jobs of a project's syncs, and the names of the syncs no kind runs (no
    ``schedule:``, not streaming)."""
    jobs: list[Job] = []
    idle: list[str] = []
    for sync in project.syncs.values():
        job = next((j for f in _FACTORIES if (j := f(sync, ctx)) is not None), None)
        if job is None:
            idle.append(sync.name)
        else:
            jobs.append(job)
    return jobs, idle

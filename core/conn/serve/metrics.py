"""The Prometheus series of ``conn serve`` (docs/realtime.md, "Metrics").

Every series carries the label ``sync``. Counters grow while a run goes (after each batch
is committed), so a long run shows progress; at the end of a run they equal its report.
Withheld rows are counted by reason at the end of each run, when the consent gate's
summary is known.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from conn.streaming import SourceLag

#: Run duration buckets, seconds: a second-scale micro-sync to an hour-long first sync.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: End-to-end latency buckets, seconds (continuous jobs: source change -> acknowledged).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
#: Report fields counted as series (``conn_sync_rows_<name>_total``).
ROW_FIELDS = ("read", "sent", "unchanged", "rejected", "pending")
CONTENT_TYPE = CONTENT_TYPE_LATEST


def report_rows(report: Any) -> dict[str, int]:
    """The row figures of a :class:`~conn.runtime.report.SyncReport` by series name."""
    return {"read": report.rows_read, "sent": report.sent, "unchanged": report.unchanged,
            "rejected": report.rejected, "pending": report.pending}


class Metrics:
    """The series of one ``conn serve`` process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rows = {f: Counter(f"conn_sync_rows_{f}", _ROW_HELP[f], ["sync"], registry=r)
                     for f in ROW_FIELDS}
        self.withheld = Counter("conn_sync_rows_withheld",
                                "Rows the consent gate withheld, by reason",
                                ["sync", "reason"], registry=r)
        self.runs = Counter("conn_sync_runs", "Runs finished, by status (ok, rejected, "
                            "failed, interrupted, refused)", ["sync", "status"], registry=r)
        self.skipped = Counter("conn_sync_runs_skipped", "Runs not started because the "
                               "previous run was still going when the sync was due again",
                               ["sync"], registry=r)
        self.duration = Histogram("conn_sync_run_duration_seconds", "Duration of runs",
                                  ["sync"], buckets=DURATION_BUCKETS, registry=r)
        self.last_success = Gauge("conn_sync_last_success_timestamp_seconds",
                                  "Unix time of the end of the last run that finished ok "
                                  "or with rejections", ["sync"], registry=r)
        self.last_run = Gauge("conn_sync_last_run_timestamp_seconds",
                              "Unix time of the end of the last run", ["sync"], registry=r)
        self.running = Gauge("conn_sync_running", "1 while a run of the sync is going",
                             ["sync"], registry=r)
        self.source_lag = Gauge("conn_sync_source_lag_seconds", "How far the sync's reader "
                                "is behind its source (set by continuous jobs)", ["sync"],
                                registry=r)
        # A source tells its lag in whatever it measures (SourceLag): a replication slot
        # in WAL bytes, a queue in messages; each figure it reports gets its own series.
        self.source_lag_bytes = Gauge("conn_sync_source_lag_bytes", "Source data the "
                                      "sync's reader has not confirmed (a replication "
                                      "slot's retained WAL; set by continuous jobs)",
                                      ["sync"], registry=r)
        self.source_lag_messages = Gauge("conn_sync_source_lag_messages", "Queue messages "
                                         "not yet acknowledged by the sync's reader (set "
                                         "by continuous jobs)", ["sync"], registry=r)
        self.latency = Histogram("conn_sync_delivery_latency_seconds", "Source change to "
                                 "destination acknowledgement (observed by continuous jobs)",
                                 ["sync"], buckets=LATENCY_BUCKETS, registry=r)
        self.scheduler_alive = Gauge("conn_serve_scheduler_alive",
                                     "1 while the scheduler thread runs", registry=r)
        self.alerts = Counter("conn_alerts_sent", "Alert notices delivered, by rule, "
                              "channel and kind (firing, resolved)",
                              ["sync", "rule", "channel", "kind"], registry=r)
        self.alert_failures = Counter("conn_alerts_failed", "Alert notices a channel did "
                                      "not take (the run is unaffected; see the log)",
                                      ["sync", "rule", "channel"], registry=r)
        self._seen: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def declare(self, sync: str) -> None:
        """Show the sync's series at zero before its first run (so a scrape lists every
        scheduled sync, and rates start from 0)."""
        for c in self.rows.values():
            c.labels(sync)
        self.skipped.labels(sync)
        self.running.labels(sync).set(0)

    # --- what a run reports ---------------------------------------------------------------

    def run_started(self, sync: str) -> None:
        with self._lock:
            self._seen[sync] = dict.fromkeys(ROW_FIELDS, 0)
        self.running.labels(sync).set(1)

    def progress(self, sync: str, rows: dict[str, int]) -> None:
        """Count what the run did since the last call (``rows``: its totals so far)."""
        with self._lock:
            seen = self._seen.setdefault(sync, dict.fromkeys(ROW_FIELDS, 0))
            for f in ROW_FIELDS:
                delta = rows.get(f, 0) - seen[f]
                if delta > 0:
                    self.rows[f].labels(sync).inc(delta)
                    seen[f] += delta

    def run_finished(self, sync: str, status: str, seconds: float, rows: dict[str, int],
                     withheld: dict[str, int]) -> None:
        """The end of a run: its last rows, withheld rows by reason, status, duration."""
        self.progress(sync, rows)
        for reason, n in withheld.items():
            if n:
                self.withheld.labels(sync, reason).inc(n)
        self.runs.labels(sync, status).inc()
        self.duration.labels(sync).observe(seconds)
        now = time.time()
        self.last_run.labels(sync).set(now)
        if status in ("ok", "rejected"):
            self.last_success.labels(sync).set(now)
        self.running.labels(sync).set(0)

    def alerts_sent(self, deliveries: list[Any]) -> None:
        """Count the notices :func:`conn.alerts.after_run` tried after a run, or a
        followed sync's lag rules (:mod:`conn.alerts.lag`) while it runs."""
        for d in deliveries:
            if d.ok:
                self.alerts.labels(d.sync, d.rule, d.channel, d.kind).inc()
            else:
                self.alert_failures.labels(d.sync, d.rule, d.channel).inc()

    def run_skipped(self, sync: str) -> None:
        self.skipped.labels(sync).inc()

    # --- hooks for continuous jobs --------------------------------------------------------

    def set_source_lag(self, sync: str, seconds: float) -> None:
        """How far behind its source a continuous sync reads (replication slot lag,
        consumer lag), in seconds: set it after each micro-batch and on heartbeats."""
        self.source_lag.labels(sync).set(seconds)

    def set_source_lag_figures(self, sync: str, lag: SourceLag) -> None:
        """Every figure a :class:`~conn.streaming.SourceLag` knows (``seconds``,
        ``bytes``, ``messages``) in its series; an unknown one (None) leaves its series
        as it was."""
        if lag.seconds is not None:
            self.set_source_lag(sync, lag.seconds)
        if lag.bytes is not None:
            self.source_lag_bytes.labels(sync).set(lag.bytes)
        if lag.messages is not None:
            self.source_lag_messages.labels(sync).set(lag.messages)

    def observe_latency(self, sync: str, seconds: float) -> None:
        """One change's time from its source commit to the destination's
        acknowledgement."""
        self.latency.labels(sync).observe(seconds)

    def exposition(self) -> bytes:
        """The text format a Prometheus server scrapes."""
        return generate_latest(self.registry)


_ROW_HELP = {
    "read": "Rows read from the source",
    "sent": "Rows the destination acknowledged (inserted, updated, deleted)",
    "unchanged": "Rows not sent because the destination already has them",
    "rejected": "Rows rejected (by the mapper, the planner or the destination)",
    "pending": "Rows neither acknowledged nor rejected (re-sent by a later run)",
}

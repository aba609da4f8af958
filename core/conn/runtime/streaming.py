"""Streaming syncs: follow a source's changes and deliver them in micro-batches.

``conn sync SOURCE DEST --follow`` (and ``conn serve``, through :func:`follow`) runs a
sync whose source is a :class:`~conn.streaming.StreamingSource` until asked to stop.
Changes are gathered into micro-batches, each closed when it holds ``batch_rows``
changes or its oldest change has waited ``max_latency_ms`` since its commit at the
source (since conn read it, when the source gives no commit times), whichever comes
first: a quiet stream still delivers promptly, a busy one batches.

Each micro-batch goes through the runner's own per-batch path
(:meth:`SyncRunner._plan_batch`: consent gate, mapper, planner, delivery lane, state
commits), so a streamed row meets exactly the checks of a batch sync; there is no second
path to a destination. What differs:

* every micro-batch is a new planning pass (:meth:`SyncState.rebase`): a key may change
  many times in a run, and is planned against what the destination acknowledged for it
  so far (an unchanged payload is not re-sent). A micro-batch is planned while the
  delivery lane still sends the ones before it (handed over whole, as one lane job),
  unless it holds one of their keys: then only once they are committed;
* within a micro-batch only the last change of each key counts (a row inserted and then
  updated is sent once, with its final values);
* ``mirror`` mode deletes, by the match value stored in the state, the keys the stream
  deleted and the keys whose row the gate now withholds (consent withdrawn by an
  update); other modes send no deletes (they are counted as ``skipped``);
* before its first request goes out, how far the micro-batch reaches is stored; after a
  restart the first micro-batch reaches at least as far, so what a crash makes it send
  again is the same records under the same idempotency keys
  (:mod:`conn.runtime.stream_state`);
* the answers to the micro-batch's requests are committed together
  (:mod:`conn.runtime.commit_buffer`): when all are answered, or earlier once one
  window of requests (``concurrency`` x ``batch_size`` records) is answered and not yet
  committed; then its position is saved in the sync's state (strictly after the rows
  it covers) and only then acknowledged to the source
  (:meth:`StreamingSource.acknowledge`). So a crash re-sends at most the requests in
  flight and one window answered since the last commit, and the source redelivers
  nothing the state does not already hold.

Stopping: ``stop`` set (``conn serve``), Ctrl-C or SIGTERM (:mod:`conn.interrupt`): no
further micro-batch is started, those handed to the lane are answered and committed,
their position acknowledged, and the run ends (``ok`` when stopped by ``stop``, ``interrupted``
on a signal, as for batch syncs). Changes gathered but not yet sent stay
unacknowledged: the source redelivers them on the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn import interrupt, secrets
from conn.alerts.lag import AlertsFn, LagWatch
from conn.errors import ConfigError
from conn.keys import key_array
from conn.runtime import activation, delivery
from conn.runtime.commit_buffer import CommitBuffer
from conn.runtime.lane import Bundle
from conn.runtime.pausing import paused_report
from conn.runtime.report import RunInfo, RunReport, SyncReport
from conn.runtime.runner import (
    PreparedSync,
    RunOptions,
    SyncRunner,
    open_state_store,
)
from conn.runtime.stream_state import StreamState
from conn.state.paused import is_paused, paused
from conn.streaming import DELETE, OPERATION, ChangeBatch, SourceLag, is_streaming

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig
    from conn.destination import WriteResult
    from conn.plugins import Registry
    from conn.runtime.lane import DeliveryLane
    from conn.source import Source
    from conn.state.contracts import StateStore, SyncState

log = logging.getLogger("conn.runtime")

#: Micro-batch bounds when the sync does not set ``batch_rows`` / ``max_latency_ms``.
DEFAULT_BATCH_ROWS = 10_000
DEFAULT_MAX_LATENCY_MS = 500
#: A quiet stream's position (heartbeats only) is saved and acknowledged at most this
#: often, so a source's upstream can forget what it skipped without a commit per beat.
IDLE_SAVE_SECONDS = 10.0
#: A streaming run ends after this long at a micro-batch boundary and :func:`follow`
#: starts the next at once: the run history gets an entry per segment, and the state
#: folds the segment's changes (which a run keeps in memory to plan against them).
SEGMENT_SECONDS = 3600.0
#: ... or once it handed this many changes to the lane, so that a busy stream's memory
#: stays bounded (a run keeps about 150 bytes per key changed in it: some 300 MB here).
SEGMENT_CHANGES = 2_000_000

#: ``on_batch(report, info)``: called on the delivery thread after each micro-batch is
#: committed; ``info`` holds ``rows`` (changes), ``position``, ``latencies`` (seconds
#: from each change's commit at the source to its commit in conn's state, when the
#: source gives commit times), ``lag`` (the source's :class:`~conn.streaming.SourceLag`)
#: and ``seconds`` (the micro-batch's time in conn).
BatchFn = Callable[[SyncReport, dict[str, Any]], None]


class StreamingRunner(SyncRunner):
    """Runs one streaming sync until ``stop`` is set or a stop is requested (see the
    module docstring). ``on_batch`` is told of every committed micro-batch."""

    def __init__(self, project: Project, sync: SyncConfig, registry: Registry,
                 store: StateStore, run: RunInfo, options: RunOptions | None = None, *,
                 stop: threading.Event | None = None, on_batch: BatchFn | None = None,
                 sources: Mapping[str, Source] | None = None) -> None:
        super().__init__(project, sync, registry, store, run, options, sources=sources)
        if self.options.dry_run or self.options.full_resync:
            raise ConfigError("--follow runs a sync continuously; it cannot be combined "
                              "with --dry-run or --full-resync (run those without it)")
        self.stop = stop or threading.Event()
        self.on_batch = on_batch
        self.batch_rows = self.options.batch_rows or sync.batch_rows or DEFAULT_BATCH_ROWS
        self.max_latency = (sync.max_latency_ms or DEFAULT_MAX_LATENCY_MS) / 1000.0
        # Written on the delivery thread once a position is saved; read here, where the
        # source is iterated and acknowledged.
        self._committed: Any = None
        self._committed_seq = 0
        self._acked_seq = 0
        #: The position stored as committed (written on the delivery thread, read here
        #: only once the lane is drained).
        self._saved_position: Any = None
        #: The micro-batch's acknowledgements, committed with its position or once
        #: they reach ``_window_rows`` records (set when the destination is known).
        self._buffer = CommitBuffer()
        self._window_rows = 1
        #: Keys of the micro-batches handed to the lane (by number), until the
        #: delivery thread committed them (``_done_seq``).
        self._flights: deque[tuple[int, pa.Array]] = deque()
        self._flushed_seq = 0
        self._done_seq = 0
        #: Whether the run ended because its segment was over (see SEGMENT_SECONDS).
        self.segment_over = False

    def _stopping(self) -> bool:
        return self.stop.is_set() or interrupt.is_requested()

    # --- the run ---------------------------------------------------------------------------

    def _body(self, p: PreparedSync, state_of: Callable[[], SyncState],
              lane: DeliveryLane) -> None:
        if not is_streaming(p.source):
            raise ConfigError(
                f"source {self.sync.source!r} (type {p.source.name!r}) cannot be followed: "
                "it offers no change stream; run the sync without --follow",
                file=str(self.project.file), path=f"syncs.{self.sync.name}.source")
        st = state_of()
        self._source = p.source
        caps = p.obj.capabilities
        # At most one window of requests (``concurrency`` x ``batch_size`` records)
        # answered and not yet committed: a crash re-sends at most that and the requests
        # in flight, however large the micro-batch (a backlog after a restart).
        self._window_rows = max(1, caps.concurrency) * max(1, caps.batch_size)
        stream = activation.narrowed(p)
        if p.stage is not None:
            p.stage.fresh = True  # traits of each micro-batch's keys as they are now
        wait = max(0.005, min(self.max_latency / 4, 1.0))
        stored = StreamState.load(st.source_state())
        self._saved_position = stored.position
        # A micro-batch was in flight when the last run ended: the first one now reaches
        # at least as far, so what it re-sends keeps its keys (conn.runtime.stream_state).
        catch_up = stored if stored.sending else None
        order = p.source.position_key  # type: ignore[attr-defined]
        changes = p.source.follow(stream, stored.position, wait=wait)  # type: ignore[attr-defined]
        pending: list[ChangeBatch] = []
        rows, first_at, last_save = 0, 0.0, time.monotonic()
        position: Any = None
        saved: Any = object()
        segment_end, flushed = time.monotonic() + SEGMENT_SECONDS, 0
        try:
            for batch in changes:
                self._acknowledge(p)
                if lane.stopped or self._stopping():
                    break
                if not rows and (time.monotonic() >= segment_end
                                 or flushed >= SEGMENT_CHANGES):
                    self.segment_over = True
                    break
                position = batch.position
                held = batch.rows + len(batch.rejected)
                if held:
                    if not rows:
                        first_at = time.monotonic() - _age(batch)
                    pending.append(batch)
                    rows += held
                now = time.monotonic()
                due = bool(rows) and (rows >= self.batch_rows
                                      or now - first_at >= self.max_latency)
                if due and catch_up is not None:
                    due = catch_up.covers(position, rows, order)
                    catch_up = None if due else catch_up
                if due:
                    if not self._flush(p, st, lane, pending, position):
                        break
                    flushed += rows
                    pending, rows, saved, last_save = [], 0, position, now
                elif (not rows and catch_up is None and position != saved
                      and now - last_save >= IDLE_SAVE_SECONDS):
                    if not self._flush(p, st, lane, [], position):
                        break
                    saved, last_save = position, now
            lane.drain()
            self._acknowledge(p)
        finally:
            changes.close()

    def _acknowledge(self, p: PreparedSync) -> None:
        """Acknowledge to the source the last position the delivery thread saved."""
        seq, position = self._committed_seq, self._committed
        if seq != self._acked_seq:
            p.source.acknowledge(position)  # type: ignore[attr-defined]
            self._acked_seq = seq

    def _flush(self, p: PreparedSync, st: SyncState, lane: DeliveryLane,
               batches: list[ChangeBatch], position: Any) -> bool:
        """Plan one micro-batch and hand it to the lane as one job, the save of its
        position behind its requests; False when the lane stopped (a delivery failed).
        It is planned while the lane still delivers the micro-batches before it, unless
        it holds a key of theirs: then once they are committed (its plan needs their
        acknowledgements)."""
        self._acknowledge(p)
        if lane.stopped:
            return False
        t0 = time.monotonic()
        times: pa.Array | None = None
        jobs = Bundle()
        seq = self._flushed_seq = self._flushed_seq + 1
        with_rows = [b for b in batches if b.rows]
        if with_rows:
            changes = pa.concat_batches([b.changes for b in with_rows if b.changes])
            keys = key_array(changes, p.stream.primary_key)
            if self._in_flight(keys):
                lane.drain()
                self._acknowledge(p)
                if lane.stopped:
                    return False
            self._flights.append((seq, keys))
            # Its reach is stored before any of its requests goes out.
            jobs.submit(partial(self._save_reach, st, position,
                                sum(b.rows + len(b.rejected) for b in batches)))
            st.rebase(keys)
            if all(b.commit_times is not None for b in with_rows):
                times = pa.chunked_array([b.commit_times for b in with_rows]).combine_chunks()
            self._send(p, st, lane, jobs, changes, keys)
        rejected = [r for b in batches for r in b.rejected]
        if rejected:
            # Recorded before the position's save: acknowledged only after.
            jobs.submit(partial(self._record_rejected, st, rejected))
        jobs.submit(partial(self._save_position, st, position, sum(b.rows for b in batches),
                            times, t0, seq))
        lane.submit(jobs)
        return not lane.stopped

    def _in_flight(self, keys: pa.Array) -> bool:
        """Whether a micro-batch handed to the lane and not yet committed holds one of
        ``keys`` (forgetting those committed)."""
        while self._flights and self._flights[0][0] <= self._done_seq:
            self._flights.popleft()
        if not self._flights:
            return False
        held = pa.chunked_array([k for _, k in self._flights]).combine_chunks()
        return bool(pc.any(pc.is_in(keys, value_set=held.cast(keys.type))).as_py())

    def _send(self, p: PreparedSync, st: SyncState, lane: DeliveryLane, jobs: Bundle,
              changes: pa.RecordBatch, keys: pa.Array) -> None:
        """Plan into ``jobs`` the last change of each key (``keys``: the changes'
        primary keys): upserts through the runner's per-batch path, deletes (mirror
        mode) by the stored match values."""
        rep = self.report
        last = _last_per_key(keys)
        if len(last) != len(keys):
            # Changes superseded by a later one of the same row: read, not sent.
            rep.rows_read += len(keys) - len(last)
            changes, keys = changes.take(last), keys.take(last)
        is_delete = pc.equal(changes.column(OPERATION), DELETE)
        columns = [c for c in changes.schema.names if c != OPERATION]
        upserts = changes.filter(pc.invert(is_delete)).select(columns)
        up_keys = keys.filter(pc.invert(is_delete))
        gone = keys.filter(is_delete)
        if upserts.num_rows:
            passed = self._plan_batch(p, upserts, st, jobs, keys=up_keys)
            if self.sync.mode == "mirror":
                # Rows the gate withheld (consent withdrawn by this change) leave the set.
                withheld = up_keys.filter(pc.invert(pc.is_in(up_keys, value_set=passed)))
                gone = pa.concat_arrays([gone, withheld.cast(pa.string())])
        rep.rows_read += int(pc.sum(is_delete).as_py() or 0)
        if not len(gone):
            return
        if self.sync.mode != "mirror":
            rep.skipped += len(gone)
            return
        size = max(p.obj.capabilities.batch_size, 1000)
        lane.drain()  # the stored match values are read while nothing commits
        for found in st.held(gone, size, self._match_type):
            jobs.submit(partial(self._deliver_deletes, p, st, found, time.monotonic()))

    def _record_rejected(self, st: SyncState, rejected: list[tuple[str, str]]) -> bool:
        """On the lane: store the messages the source could not read as rejections of
        the sync (listed by ``conn rejected``), with the micro-batch's commit."""
        self.report.add_rejections([reason for _, reason in rejected])
        keys = pa.array([k for k, _ in rejected], pa.string())
        self._buffer.add(keys, pa.nulls(len(keys), pa.uint64()),
                         pa.nulls(len(keys), pa.string()), pa.array([False] * len(keys)),
                         [(i, reason) for i, (_, reason) in enumerate(rejected)])
        return True

    def _commit(self, st: SyncState, keys: pa.Array, hashes: pa.Array,
                match_values: pa.Array, result: WriteResult) -> pa.Array:
        # One request's answer, held for the micro-batch's commit
        # (conn.runtime.commit_buffer); the runner's own rejections of mapping and
        # planning are committed at once, as in a batch sync (their keys are others).
        acked = delivery.ack_mask(len(keys), result)
        self._buffer.add(keys, hashes, match_values, acked, *delivery.rejections(result))
        self.report.add_rejections([r.reason for r in result.rejected])
        self.report.pending += len(result.pending)
        if len(self._buffer) >= self._window_rows:
            self._buffer.flush(st)
        return acked

    def _deliver(self, job: delivery.BatchDelivery) -> bool:
        ok = super()._deliver(job)
        if not ok:
            # The run stops (the destination failed, or a stop abandoned requests): what
            # was acknowledged is committed now, as a batch sync would have; the
            # position is not saved, so the rest is sent again, under the same keys.
            self._buffer.flush(job.state)
        return ok

    def _save_reach(self, st: SyncState, position: Any, changes: int) -> None:
        """On the lane, before the micro-batch's requests: store how far it reaches."""
        st.save_source_state(StreamState(self._saved_position, position, changes).stored())

    def _save_position(self, st: SyncState, position: Any, rows: int,
                       times: pa.Array | None, t0: float, seq: int) -> None:
        """On the lane, after the micro-batch's requests were answered: commit their
        acknowledgements, store the position, then let the reading thread acknowledge
        it."""
        self._buffer.flush(st)
        st.save_source_state(StreamState(position).stored())
        self._saved_position = position
        self._committed = position
        self._committed_seq += 1
        self._done_seq = seq
        if self.on_batch is not None and rows:
            latencies = []
            if times is not None and len(times):
                latencies = (time.time() - times.cast(pa.float64()).to_numpy(
                    zero_copy_only=False)).tolist()
            self.on_batch(self.report, {"rows": rows, "position": position,
                                        "latencies": latencies, "lag": self._lag(),
                                        "seconds": round(time.monotonic() - t0, 4)})

    def source_lag(self) -> SourceLag:
        """The source's lag now (for metrics and lag alerts); unknown before the source
        is open or when it cannot tell."""
        return self._lag() if getattr(self, "_source", None) is not None else SourceLag()

    def _lag(self) -> SourceLag:
        """The source's lag for metrics; unknown when it cannot tell right now."""
        try:
            return self._source.lag()  # type: ignore[attr-defined]
        except Exception as exc:  # metrics never stop a stream
            log.debug("lag of %s: %s", self.sync.source, secrets.redact(exc))
            return SourceLag()


def _age(batch: ChangeBatch) -> float:
    """How long ago the batch's oldest change was committed at the source (0 when the
    source gives no commit times, or its clock is ahead of ours): the time bound of a
    micro-batch counts from there, not from when conn read the change."""
    if batch.commit_times is None or not len(batch.commit_times):
        return 0.0
    oldest = pc.min(batch.commit_times).as_py()
    return 0.0 if oldest is None else max(0.0, time.time() - float(oldest))


def _last_per_key(keys: pa.Array) -> pa.Array:
    """Row indices of the last change of each key, in stream order (rows without a key
    are all kept: the planner rejects them with a reason)."""
    n = len(keys)
    idx = pa.array(np.arange(n, dtype=np.int64))
    t = pa.table({"k": keys, "i": idx})
    last = t.group_by("k", use_threads=False).aggregate([("i", "max")]).column("i_max")
    if keys.null_count:
        nulls = pc.indices_nonzero(keys.is_null())
        last = pa.chunked_array([last, nulls.cast(pa.int64())])
    out = np.sort(np.asarray(last.to_numpy() if isinstance(last, pa.Array)
                             else last.combine_chunks().to_numpy()))
    return pa.array(np.unique(out), pa.int64())


def _judge_segment(project: Project, store: StateStore, report: RunReport,
                   on_alerts: AlertsFn | None) -> None:
    """The run rules (``failed``, the shares, ``volume``) on a segment that ended, as
    :func:`conn.runtime.runner.run_syncs` judges a batch run: the same state, cooldown
    and "resolved" notices. A segment ended by a stop (``conn serve``'s, Ctrl-C,
    SIGTERM) was drained (what it read was answered and committed), so it is judged as
    the ``ok`` or ``rejected`` run it would have been: a follower restarted more often
    than a segment lasts is judged too. Never raises."""
    if not project.raw.get("alerts"):
        return
    from conn.alerts.engine import after_reports

    reports = [s.as_dict() for s in report.syncs]
    for rep in reports:
        if rep.get("status") == "interrupted":
            rep["status"] = "rejected" if rep.get("rejected") else "ok"
    report.alerts = after_reports(project, store, reports)
    if report.alerts and on_alerts is not None:
        try:
            on_alerts(report.alerts)
        except Exception as exc:  # counting a notice never stops a stream
            log.warning("alerts: %s", secrets.redact(exc))


def follow(project: Project, sync_name: str, stop: threading.Event, on_batch:
           BatchFn | None = None, *, registry: Registry | None = None,
           store: StateStore | None = None, options: RunOptions | None = None,
           on_alerts: AlertsFn | None = None) -> SyncReport:
    """Run the streaming sync ``sync_name`` of ``project`` until ``stop`` is set (or a
    stop is requested, or a delivery fails); return the report of its last run (one run
    per :data:`SEGMENT_SECONDS`, each in the run history). For ``conn serve`` (a
    continuous job) and ``conn sync --follow``. Opens the registry and state store
    unless given (a given store is left open). While it runs, the project's lag rules
    watching the sync are judged (:class:`conn.alerts.lag.LagWatch`), and the run rules
    on each segment that ends (:func:`_judge_segment`); ``on_alerts`` is told of the
    notices they tried."""
    from conn.plugins import Registry

    if sync_name not in project.syncs:
        raise ConfigError(f"no sync named {sync_name!r} (declared: "
                          f"{', '.join(project.syncs) or 'none'})", file=str(project.file),
                          path="syncs")
    sync = project.syncs[sync_name]
    registry = registry or Registry()
    registry.load_observers()
    own_store = store is None
    store = store or open_state_store(project, registry)
    run = RunInfo.new(project.dir, [sync_name])
    report = RunReport(run)
    watch = None
    held = paused(project.state_dir)
    if sync_name in held:  # conn pause: not started (a running one stops at a segment's end)
        if own_store:
            store.close()
        return paused_report(sync, run, held[sync_name])
    try:
        runner = StreamingRunner(project, sync, registry, store, run, options, stop=stop,
                                 on_batch=on_batch)
        # Lag rules are judged while the sync runs (each segment's runner in turn).
        watch = LagWatch.start(project, store, sync_name,
                               lambda: (runner.source_lag(), runner.run_info.run_id),
                               on_alerts)
        while True:
            registry.hook.run_started(run=run)
            try:
                report.syncs.append(runner.run())
            finally:
                report.finished_at = time.time()
                registry.hook.run_finished(run=run, report=report)
            _judge_segment(project, store, report, on_alerts)
            if (not runner.segment_over or stop.is_set() or interrupt.is_requested()
                    or is_paused(project.state_dir, sync_name)):
                return report.syncs[-1]
            # The next segment: a new run of the same sync, from the saved position.
            run = RunInfo.new(project.dir, [sync_name])
            report = RunReport(run)
            runner = StreamingRunner(project, sync, registry, store, run, options,
                                     stop=stop, on_batch=on_batch)
    finally:
        if watch is not None:
            watch.close()
        if own_store:
            store.close()

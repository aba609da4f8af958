"""The pipeline: source → consent gate → mapper → planner → destination → state.

The runner owns every step between a source and a destination; plugins see only their own
end. State is committed per batch from the destination's acknowledgements, so a crash at
any point resumes without loss and without re-sending acknowledged rows.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conn import events, interrupt, secrets
from conn.consent import build_gate
from conn.destination import WriteResult
from conn.errors import ConfigError, ConfigErrors, ConnError
from conn.keys import key_array
from conn.mapping import build_mapper
from conn.privacy.suppression import Suppression
from conn.runtime import activation, delivery, forget, holdouts, merged, pausing, retry
from conn.runtime.lane import DeliveryLane, JobSink
from conn.runtime.opening import OpenedInBackground
from conn.runtime.options import RunOptions
from conn.runtime.report import RunInfo, RunReport, SyncReport
from conn.source import SourceState
from conn.state.target import SyncTarget
from conn.sync_context import SyncContext

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig
    from conn.consent import ConsentGate
    from conn.destination import Destination, ObjectInfo, Operation
    from conn.mapping import Mapper
    from conn.plugins import Registry
    from conn.source import Source, StreamInfo
    from conn.state.contracts import Deletions, StateStore, SyncState

log = logging.getLogger("conn.runtime")

#: The error of a run stopped on request (Ctrl-C, SIGTERM).
INTERRUPTED = ("interrupted on request; what the destination acknowledged is saved, the "
               "rest stays pending for the next run")

#: What each sync mode sends for planned inserts and updates: (operation, send updates?).
MODE_PLAN = {
    "upsert": ("upsert", True),
    "mirror": ("upsert", True),
    "update": ("update", True),
    "insert": ("insert", False),
    "append": ("append", False),
    # Every new row and every row whose mapped payload changed is one event.
    "events": ("event", True),
}


ProgressFn = Callable[[SyncReport, dict[str, Any]], None]


@dataclass(frozen=True)
class PreparedSync:
    """A sync ready to run: its connectors, the resolved stream and object, the match
    key, the consent gate and mapper built for them, and its mode."""

    source: Source
    dest: Destination
    stream: StreamInfo
    obj: ObjectInfo
    match_key: str
    gate: ConsentGate
    mapper: Mapper
    mode: str
    holdout: holdouts.Holdout | None = None
    stage: activation.ActivationStage | None = None  #: traits etc. (docs/traits.md)

    @property
    def operation(self) -> Operation:
        """The operation planned inserts and updates are sent with."""
        return MODE_PLAN[self.mode][0]  # type: ignore[return-value]

    @property
    def send_updates(self) -> bool:
        """Whether the mode sends updates of known keys (``insert`` and ``append`` do
        not)."""
        return MODE_PLAN[self.mode][1]


def open_state_store(project: Project, registry: Registry) -> StateStore:
    """The project's state store, as configured under ``state:`` (DuckDB by default)."""
    backend = project.state.get("backend", "duckdb")
    factory = registry.state_backend(backend)
    return factory(project.state.get("url"), project.dir)


class SyncRunner:
    """Runs one sync of a project once.

    ``store``: the state store (left open); ``run``: the run the sync belongs to;
    ``progress``: called after each batch with the report so far and the batch's counts;
    ``sources``: ready source instances by name, used instead of building those sources
    from the project (``conn singer target`` hands its stdin reader as ``singer-stdin``)
    and closed at the end of the run like the runner's own.
    """

    def __init__(self, project: Project, sync: SyncConfig, registry: Registry,
                 store: StateStore, run: RunInfo, options: RunOptions | None = None,
                 progress: ProgressFn | None = None, *,
                 sources: Mapping[str, Source] | None = None) -> None:
        self.project, self.sync, self.registry = project, sync, registry
        self.store, self.run_info = store, run
        self.options = options or RunOptions()
        self.progress = progress
        self.sources: dict[str, Source] = dict(sources or {})
        self.report = SyncReport(
            name=sync.name, source=sync.source, destination=sync.destination,
            object=sync.object, mode=sync.mode, run_id=run.run_id,
            rejected_only=self.options.rejected_only)
        self._consent_cache: dict[str, pa.Table] = {}
        self._full_read = True
        #: The match field's type in this run's mapped batches (read stored match values
        #: of older state formats, which kept text only, with it).
        self._match_type: pa.DataType | None = None
        #: The threads that call the destination's write_batch for this run.
        self._writers: ThreadPoolExecutor | None = None

    # --- set-up -----------------------------------------------------------------------

    def _connector(self, kind: str, name: str) -> Any:
        if kind == "source" and name in self.sources:
            return self.sources[name]
        table = self.project.sources if kind == "source" else self.project.destinations
        if kind == "source" and not name:
            raise ConfigError(f"sync {self.sync.name!r} has no source: it loads a Singer "
                              f"tap's output with 'conn singer target --sync "
                              f"{self.sync.name}'", file=str(self.project.file),
                              path=f"syncs.{self.sync.name}.source")
        cfg = table[name]
        cls = (self.registry.source_class if kind == "source"
               else self.registry.destination_class)(cfg.type)
        secrets.register_config_secrets(cfg.config, cls.config_schema)
        cls.validate_config(cfg.config, file=str(self.project.file),
                            path=f"{kind}s.{name}.config")
        return cls.create(cfg.config, instance=name, project_dir=self.project.dir)

    def consent_events(self, name: str) -> pa.Table:
        """Read a declared consent source completely (cached for the run)."""
        if name not in self._consent_cache:
            spec = self.project.consent_sources[name]
            src: Source = self._connector("source", spec["source"])
            try:
                stream = src.stream(spec["stream"])
                batches = [b for b in src.read(stream) if not isinstance(b, SourceState)]
                self._consent_cache[name] = pa.Table.from_batches(batches, stream.schema) \
                    if batches else stream.schema.empty_table()
            finally:
                src.close()
        return self._consent_cache[name]

    def prepare(self, source: Source, dest: Destination) -> PreparedSync:
        """Resolve stream, object and match key; build gate and mapper; raise every
        configuration problem at once."""
        sync, f = self.sync, str(self.project.file)
        base = f"syncs.{sync.name}"
        stream = source.stream(sync.stream, query=sync.query, primary_key=sync.primary_key)
        obj = dest.object(sync.object)
        errors: list[ConfigError] = []
        caps = obj.capabilities
        if sync.mode not in caps.modes:
            errors.append(ConfigError(
                f"mode {sync.mode!r} is not supported by {sync.destination!r} object "
                f"{obj.name!r} (supported: {', '.join(sorted(caps.modes))})",
                file=f, path=f"{base}.mode"))
        if sync.mode == events.MODE:
            # Also for syncs not read from conn.yml (conn singer target --mode events).
            from conn.config.load import event_config_errors

            errors += event_config_errors(sync, f)
        if sync.mode == "mirror" and not caps.supports_delete:
            errors.append(ConfigError(
                f"mode 'mirror' needs deletes, which {sync.destination!r} object "
                f"{obj.name!r} does not support", file=f, path=f"{base}.mode"))
        if not stream.primary_key:
            errors.append(ConfigError(
                f"stream {stream.name!r} declares no primary key; set 'primary_key'",
                file=f, path=f"{base}.primary_key"))
        missing_pk = [c for c in stream.primary_key if c not in stream.schema.names]
        if missing_pk:
            errors.append(ConfigError(f"primary key column(s) {missing_pk} not in stream "
                                      f"{stream.name!r}", file=f, path=f"{base}.primary_key"))
        match_key = sync.match_key or (obj.identifiers[0] if obj.identifiers else "")
        if match_key not in obj.identifiers:
            errors.append(ConfigError(
                f"match key {match_key!r} is not an identifier of {obj.name!r} "
                f"(identifiers: {', '.join(obj.identifiers) or 'none'})",
                file=f, path=f"{base}.match_key"))
        if errors:
            raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
        if sync.mode == events.MODE:
            # The event's name and time are mapped fields: they pass the gate and the
            # mapper like every other, and count in the payload hash.
            sync, obj = events.event_sync(sync), events.event_object(obj)
        seen, stage = activation.prepare(self, stream)  # traits are columns like any
        ctx = SyncContext(self.project, sync, self.project.destinations[sync.destination],
                          obj, seen, self.registry, self.consent_events, match_key,
                          now=datetime.fromtimestamp(self.run_info.started_at, UTC),
                          suppression=self._suppression())
        from conn.profiles.consent import gate_index  # consent per profile, if asked

        gate = build_gate(ctx, gate_index(ctx))
        mapper = build_mapper(ctx)
        issues = gate.issues() + mapper.issues()
        if issues:
            raise issues[0] if len(issues) == 1 else ConfigErrors(issues)
        holdout = holdouts.prepare(self.project, self.sync, self.store, self.run_info.run_id,
                                   restart=self.options.new_experiment, stage=stage)
        return PreparedSync(source, dest, stream, obj, match_key, gate, mapper, sync.mode,
                            holdout, stage)

    def _suppression(self) -> Suppression:
        """The project's suppression list (``conn check`` prepares syncs without a
        state store: nobody is listed then)."""
        return Suppression.load(self.store.privacy() if self.store is not None else None)

    def target(self, p: PreparedSync) -> SyncTarget:
        """What this sync's state describes: checked against the stored identity."""
        sync, stream = self.sync, p.stream
        key_types = pa.schema([stream.schema.field(c) for c in stream.primary_key
                               if c in stream.schema.names])
        return SyncTarget(
            source=sync.source, source_type=p.source.name, stream=sync.stream,
            query=sync.query, primary_key=tuple(stream.primary_key),
            destination=sync.destination, destination_type=p.dest.name,
            destination_identity=p.dest.target_identity(), object=p.obj.name,
            match_key=p.match_key, key_types=key_types, file=str(self.project.file))

    def preflight(self) -> None:
        """Raise what would refuse this sync (its configuration, a changed target)
        without reading a row: a run of several syncs checks them all first, so that a
        refused one does not leave the others half done. Other failures (a connection)
        are left to the run, which reports them per sync."""
        source = dest = None
        try:
            source = self._connector("source", self.sync.source)
            dest = self._connector("destination", self.sync.destination)
            prepared = self.prepare(source, dest)
            if not (self.options.dry_run and self.options.on_target_change):
                self.store.check_target(self.sync.name, self.target(prepared),
                                        self.options.on_target_change)
        except ConfigError:
            raise
        except Exception as exc:
            log.debug("preflight of %s: %s", self.sync.name, secrets.redact(exc))
        finally:
            for c in (source, dest):
                if c is not None:
                    with contextlib.suppress(Exception):
                        c.close()

    # --- the run ------------------------------------------------------------------------

    def run(self) -> SyncReport:
        rep = self.report
        rep.started_at = time.time()
        started = time.monotonic()
        source = dest = None
        try:
            source = self._connector("source", self.sync.source)
            dest = self._connector("destination", self.sync.destination)
            p = self.prepare(source, dest)
            if not self.options.dry_run:
                self._retry_erasures(p)
                if p.holdout is not None:
                    p.holdout.start()
            self._writers = ThreadPoolExecutor(
                max_workers=max(1, p.obj.capabilities.concurrency),
                thread_name_prefix="conn-write")
            target: SyncTarget | None = self.target(p)
            store, on_change = self.store, self.options.on_target_change
            if self.options.dry_run and on_change == "new":
                # A preview of a new target: what it would get from scratch, without
                # touching the state of the old one.
                from conn.state.backends.memory import MemoryStateStore

                store, target = MemoryStateStore(), None
            elif self.options.dry_run and on_change == "same":
                target = None  # plan against the state as it is; record nothing
            # The state opens on a helper thread while the first batch is read, gated and
            # mapped. The lane closes (every handed-over batch delivered) before the state.
            with activation.triggers(self.project, self.store, p), OpenedInBackground(
                    store.open_sync(self.sync.name, self.run_info.run_id,
                                    full_resync=self.options.full_resync, target=target,
                                    on_target_change=on_change), "conn-state-open") as \
                    opening, DeliveryLane() as lane:
                self._body(p, merged.watch(p, self.sync, opening.value), lane)
            summary = p.gate.summary()
            rep.experiment = p.holdout.finish() if p.holdout is not None else {}
            rep.consent = summary
            rep.legal_bases = dict(summary.get("legal_bases", {}))
            if interrupt.is_requested() and rep.status in ("running", "failed"):
                rep.status = "interrupted"
                rep.error = INTERRUPTED
            if rep.status == "running":
                if self.options.dry_run:
                    rep.status = "dry_run"
                else:
                    rep.status = "rejected" if rep.rejected else "ok"
        except ConnError as exc:
            rep.status = "failed"
            rep.error = secrets.redact(str(exc))
            rep.error_type = type(exc).__name__
            if isinstance(exc, ConfigError):
                # The sync never started: nothing to record in its history.
                rep.status = "refused"
                raise
        except KeyboardInterrupt:
            rep.status, rep.error = "interrupted", INTERRUPTED
            raise
        except Exception as exc:
            log.exception("sync %s failed", self.sync.name)
            rep.status = "failed"
            rep.error = secrets.redact(f"{type(exc).__name__}: {exc}")
        finally:
            if self._writers is not None:
                # A stopped run does not wait for requests it gave up on.
                self._writers.shutdown(wait=not interrupt.is_requested(),
                                       cancel_futures=True)
            for c in (source, dest):
                if c is not None:
                    try:
                        c.close()
                    except Exception as exc:
                        log.warning("closing %r failed: %s", c, secrets.redact(exc))
                        if rep.status in ("ok", "rejected", "running"):
                            rep.status, rep.error = "failed", secrets.redact(str(exc))
            rep.seconds = round(time.monotonic() - started, 3)
            if not self.options.dry_run and rep.status not in ("running", "refused"):
                try:
                    self.store.record_run(self.sync.name, self.run_info.run_id, rep.as_dict())
                except Exception as exc:
                    log.warning("could not record run history: %s", secrets.redact(exc))
        return rep

    def _retry_erasures(self, p: PreparedSync) -> None:
        """Send this sync's pending erasures (``conn forget``) before its rows."""
        figures = forget.retry_sync(self.store, p.dest, p.obj, p.match_key, self.sync)
        self.report.erasures = figures if figures is not None else self.report.erasures

    def _body(self, p: PreparedSync, state_of: Callable[[], SyncState],
              lane: DeliveryLane) -> None:
        """Everything between opening the state and the report: read and deliver every
        batch, then (mirror mode) delete what left the set. A streaming run replaces
        it (:mod:`conn.runtime.streaming`)."""
        rep = self.report
        self._stream_batches(p, state_of, lane)
        lane.drain()
        st = state_of()
        if rep.status != "running" or self.options.rejected_only:
            return  # a retry of rejected rows sends them only (conn.runtime.retry)
        if self.sync.mode == "mirror" or (self._full_read and merged.absorbs(st)):
            self._delete_missing(p, st, lane, only=merged.deleting(st))
        elif not self.options.dry_run and self._full_read:
            # The source was read to the end: rejections of keys that left it
            # are cleared (mirror mode does it while deleting).
            st.finish()
        merged.send(self, p, st, lane)  # merges into survivors, after their upserts

    def _stream_batches(self, p: PreparedSync, state_of: Callable[[], SyncState],
                        lane: DeliveryLane) -> None:
        """Read, gate, map and plan each batch on this thread; hand its delivery (the
        write, the commit of what was acknowledged, the counts) to ``lane``, so the
        next batch is prepared while this one is sent. Report fields are split: this
        thread counts reads, consent and planning, the lane everything after.
        ``state_of()`` gives the sync's state once it is open (it waits until then)."""
        opts = self.options
        stream = p.stream
        # Deletions need the whole set: mirror mode always reads the source in full.
        incremental = bool(stream.cursor) and not opts.full_resync and self.sync.mode != "mirror"
        incremental = incremental and not opts.rejected_only
        state = state_of().source_state() if incremental else None
        self._full_read = state is None
        batch_rows = opts.batch_rows or self.sync.batch_rows
        items = p.source.read(activation.narrowed(p), state, batch_rows)
        if opts.rejected_only:  # the rows rejected so far, read after the state opened
            items = retry.only_rejected(items, retry.rejected_keys(self.store, self.sync.name,
                                                                  state_of), stream.primary_key)
        for item in items:
            if lane.stopped or interrupt.is_requested():
                break
            if isinstance(item, SourceState):
                st = state_of()
                if not opts.dry_run:
                    # In order behind the batches read before it: a bookmark is saved
                    # only once everything before it was acknowledged.
                    save = partial(st.save_source_state, item.value)
                    if item.wait:
                        lane.call(save)
                        if lane.stopped:
                            break
                    else:
                        lane.submit(save)
                continue
            self._plan_batch(p, item, state_of(), lane)

    def _plan_batch(self, p: PreparedSync, item: pa.RecordBatch, st: SyncState,
                    lane: JobSink, *, keys: pa.Array | None = None) -> pa.Array:
        """Gate, map and plan one batch of source rows on this thread and hand its
        delivery to ``lane``: the one path every row takes to a destination. Returns
        the keys of the rows the gate passed. ``keys``: the batch's primary keys when
        the caller already made them."""
        rep, opts = self.report, self.options
        match_key, gate, mapper = p.match_key, p.gate, p.mapper
        t0 = time.monotonic()
        first_row = rep.rows_read
        rep.rows_read += item.num_rows
        item, keys, fired = activation.apply(p.stage, item, keys if keys is not None
                                             else key_array(item, p.stream.primary_key))
        gated = gate.apply(item, keys)
        rep.consent_denied += gated.withheld
        if p.holdout is not None:  # after the gate: held-out rows go no further
            gated = p.holdout.split(gated, None if opts.dry_run else lane.submit)
        mapped = mapper.apply(gated)
        if mapped.rejected:
            st.touch(pa.array([k for k, _ in mapped.rejected], pa.string()))
        if match_key in mapped.batch.schema.names:
            self._match_type = mapped.batch.schema.field(match_key).type
        plan = activation.plan(st, p.stage, fired, mapped)
        rep.unchanged += plan.unchanged
        n_ins, n_upd = len(plan.inserts), len(plan.updates)
        previous = plan.previous if plan.previous is not None else \
            pa.nulls(n_upd, pa.uint64())
        if p.send_updates:
            indices = pa.concat_arrays([plan.inserts.cast(pa.int64()),
                                        plan.updates.cast(pa.int64())])
            previous = pa.concat_arrays([pa.nulls(n_ins, pa.uint64()),
                                         previous.cast(pa.uint64())])
        else:
            indices = plan.inserts.cast(pa.int64())
            previous = pa.nulls(n_ins, pa.uint64())
            rep.skipped += n_upd
            n_upd = 0
        rejected = delivery.null_key_positions(plan.rejected, first_row, item.num_rows)
        request = None
        every = False
        if len(indices):
            # A first sync sends every row of every batch, in order: no copies then.
            every = delivery.every_row(indices, mapped.batch.num_rows)
            req_keys = mapped.keys if every else mapped.keys.take(indices)
            req_hashes = plan.hashes if every else plan.hashes.take(indices)
            request = delivery.request_from_plan(
                self.sync.name, p.obj, p.operation, mapped, None if every else indices,
                match_key, opts.dry_run,
                basis=delivery.basis(req_keys, req_hashes, previous))
        lane.submit(activation.delivery(self._deliver, delivery.BatchDelivery(
            st, p.dest, mapped, rejected, request, n_ins, n_upd, match_key,
            {"rows": rep.rows_read - first_row}, t0), fired, opts.dry_run))
        return gated.keys

    def _deliver(self, job: delivery.BatchDelivery) -> bool:
        """One batch's delivery (on the lane): store the rejections of mapping and
        planning, write, and commit what the destination acknowledged as each of its
        requests is answered. False stops the run (the destination failed; what it did
        not acknowledge stays pending)."""
        rep, opts, st = self.report, self.options, job.state
        mapped = job.mapped
        if mapped.rejected:
            rep.add_rejections([reason for _, reason in mapped.rejected])
            if not opts.dry_run:
                rkeys = pa.array([k for k, _ in mapped.rejected], pa.string())
                st.commit(rkeys, pa.nulls(len(rkeys), pa.uint64()),
                          pa.nulls(len(rkeys), pa.string()),
                          pa.array([False] * len(rkeys)),
                          [(i, r) for i, (_, r) in enumerate(mapped.rejected)])
        if job.rejected:
            rep.add_rejections([r for _, r in job.rejected])
            if not opts.dry_run:
                idx = pa.array([i for i, _ in job.rejected], pa.int64())
                rk = mapped.keys.take(idx)
                st.commit(rk, pa.nulls(len(rk), pa.uint64()), pa.nulls(len(rk), pa.string()),
                          pa.array([False] * len(rk)),
                          [(j, r) for j, (_, r) in enumerate(job.rejected)])
        request, counts = job.request, job.counts
        if request is None:
            self._batch_done(counts, job.t0)
            return True
        if opts.dry_run:
            self._preview(job.dest, request)
            rep.inserted += job.inserts
            rep.updated += job.updates
            self._batch_done(counts, job.t0)
            return True
        assert request.basis is not None
        keys, hashes = request.basis.column("key"), request.basis.column("hash")
        match_values = request.records.column(job.match_key)
        ins_acked = upd_acked = rejected = pending = 0
        error: BaseException | None = None
        # Each group of answered requests is committed before more are sent: a crash
        # re-sends at most the requests in flight (see Destination.deliver).
        for done in job.dest.deliver(request, self._writers):
            take = delivery.answered_rows(done)
            result = delivery.merged_result(done)
            acked = job.seen(keys.take(take), self._commit(
                st, keys.take(take), hashes.take(take), match_values.take(take), result))
            ins = pc.sum(pc.and_(acked, pc.less(take, job.inserts))).as_py() or 0
            total = pc.sum(acked).as_py() or 0
            ins_acked += ins
            upd_acked += total - ins
            rejected += len(result.rejected)
            pending += len(result.pending)
            error = error or result.error
        rep.inserted += ins_acked
        rep.updated += upd_acked
        counts.update(inserted=ins_acked, updated=upd_acked, rejected=rejected,
                      pending=pending)
        self._batch_done(counts, job.t0)
        if error is not None or pending:
            rep.status = "failed"
            rep.error = secrets.redact(
                f"destination {self.sync.destination!r} failed; {pending} "
                f"row(s) left pending for the next run: "
                f"{error or 'not acknowledged'}")
            return False
        return True

    def _commit(self, st: SyncState, keys: pa.Array, hashes: pa.Array,
                match_values: pa.Array, result: WriteResult) -> pa.Array:
        """Commit one write's outcome; return the acknowledged mask."""
        acked = delivery.ack_mask(len(keys), result)
        st.commit(keys, hashes, match_values, acked, *delivery.rejections(result))
        self.report.add_rejections([r.reason for r in result.rejected])
        self.report.pending += len(result.pending)
        return acked

    def _delete_missing(self, p: PreparedSync, st: SyncState, lane: DeliveryLane, *,
                        only: Callable[[Deletions], Deletions | None] | None = None) -> None:
        """Mirror mode: delete what left the set (``only``: the part of each batch to
        delete, see :mod:`conn.runtime.merged`). Each batch is written on the lane and
        waited for before the next is looked up (the state's lookup and commit take turns)."""
        size = max(p.obj.capabilities.batch_size, 1000)
        for found in st.deletions(size, self._match_type):
            gone = found if only is None else only(found)
            if gone is None:
                continue
            go_on = lane.call(partial(self._deliver_deletes, p, st, gone, time.monotonic()))
            if not go_on:
                return

    def _deliver_deletes(self, p: PreparedSync, st: SyncState, gone: Deletions,
                         t0: float) -> bool:
        rep, opts, dest = self.report, self.options, p.dest
        keys = gone.keys
        batch = pa.RecordBatch.from_arrays([gone.match_values], names=[p.match_key])
        request = delivery.delete_request(self.sync.name, p.obj, batch, p.match_key,
                                          opts.dry_run,
                                          basis=delivery.basis(keys, None, gone.hashes))
        if opts.dry_run:
            self._preview(dest, request)
            rep.deleted += len(keys)
            return True
        done = delivery.remove(dest, request, self._writers, st, keys, rep)
        rep.deleted += done.acknowledged
        rep.pending += done.pending
        self._batch_done({"rows": len(keys), "deleted": done.acknowledged}, t0)
        if done.error is not None or done.pending:
            rep.status = "failed"
            rep.error = secrets.redact(f"deleting in {self.sync.destination!r} failed: "
                                       f"{done.error or 'not acknowledged'}")
            return False
        return True

    def _preview(self, dest: Destination, request: Any) -> None:
        room = self.options.preview_rows - len(self.report.preview)
        if room <= 0:
            return
        part = request.slice(0, room)
        for req in dest.describe_requests(part):
            self.report.preview.append(secrets.redact_obj(req))
            if len(self.report.preview) >= self.options.preview_rows:
                break

    def _batch_done(self, counts: dict[str, Any], t0: float) -> None:
        counts["seconds"] = round(time.monotonic() - t0, 4)
        if self.progress:
            self.progress(self.report, counts)
        self.registry.hook.batch_done(run=self.run_info, sync=self.report, counts=counts)


def run_syncs(project: Project, syncs: list[SyncConfig], registry: Registry,
              options: RunOptions | None = None, progress: ProgressFn | None = None,
              store: StateStore | None = None) -> RunReport:
    """Run several syncs one after the other; observers see one run."""
    options = options or RunOptions()
    registry.load_observers()
    run = RunInfo.new(project.dir, [s.name for s in syncs], dry_run=options.dry_run,
                      full_resync=options.full_resync)
    report, held = RunReport(run), pausing.paused_reports(project, syncs, run, options.dry_run)
    own_store = store is None
    store = store or open_state_store(project, registry)
    try:
        if len(syncs) > 1:
            # Every sync's configuration and target first: a refused sync stops the
            # run before any sync sends a row.
            for sync in (s for s in syncs if s.name not in held):
                SyncRunner(project, sync, registry, store, run, options).preflight()
    except BaseException:
        if own_store:
            store.close()
        raise
    registry.hook.run_started(run=run)
    try:
        for sync in syncs:
            if interrupt.is_requested():
                break  # asked to stop: the syncs not started are not started
            report.syncs.append(held[sync.name] if sync.name in held else SyncRunner(
                project, sync, registry, store, run, options, progress).run())
    finally:
        report.finished_at = time.time()
        registry.hook.run_finished(run=run, report=report)
        try:
            # A preview and a run asked to stop alert no one; alerting never raises.
            if project.raw.get("alerts") and not options.dry_run \
                    and not interrupt.is_requested():
                from conn.alerts import after_run

                report.alerts = after_run(project, store, report)
        finally:
            if own_store:
                store.close()
    return report

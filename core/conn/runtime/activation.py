"""The runner's side of traits, audiences and triggers (docs/traits.md): building a
sync's :class:`~conn.traits.stage.ActivationStage`, opening its trigger's state, the
plan of a trigger's events and their delivery with the trigger's state commit."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import pyarrow as pa

from conn.errors import ConfigError
from conn.state.contracts import BatchPlan

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.pipeline import MappedBatch
    from conn.runtime.delivery import BatchDelivery
    from conn.runtime.runner import PreparedSync, SyncRunner
    from conn.source import StreamInfo
    from conn.state.contracts import StateStore, SyncState
    from conn.state.triggers import TriggerStore
    from conn.traits.stage import ActivationStage as ActivationStage
    from conn.traits.stage import TriggerBatch


def prepare(runner: SyncRunner, stream: StreamInfo
            ) -> tuple[StreamInfo, ActivationStage | None]:
    """``stream`` as the gate and the mapper see it (:func:`with_columns`) and the
    sync's stage."""
    stage = stage_of(runner, stream)
    return with_columns(stream, stage), stage


def stage_of(runner: SyncRunner, stream: StreamInfo) -> ActivationStage | None:
    """The runner's sync's traits, audience and trigger (None when it uses none)."""
    project = runner.project
    if not any(project.raw.get(k) for k in ("traits", "audiences", "triggers")):
        return None
    from conn.config.traits import parse_activation
    from conn.traits.stage import build_stage

    act, _ = parse_activation(project.raw, str(project.file))
    return build_stage(act, runner.sync, stream,
                       lambda name: runner._connector("source", name),
                       datetime.fromtimestamp(runner.run_info.started_at, UTC),
                       str(project.file))


def with_columns(stream: StreamInfo, stage: ActivationStage | None) -> StreamInfo:
    """``stream`` as the gate and the mapper see it: with the stage's columns (traits,
    a trigger's columns), like any other. The source is read without them."""
    if stage is None:
        return stream
    return dataclasses.replace(stream, schema=pa.schema([*stream.schema, *stage.fields()]))


@contextlib.contextmanager
def triggers(project: Project, store: StateStore, p: PreparedSync) -> Iterator[None]:
    """For a trigger's sync: its stored entries, open for the run, handed to its stage."""
    found = open_trigger_store(project, store, p.stage)
    try:
        yield
    finally:
        if found is not None:
            found.close()


def open_trigger_store(project: Project, store: StateStore,
                       stage: ActivationStage | None) -> TriggerStore | None:
    """The trigger's stored entries (for a trigger's sync), handed to its stage."""
    if stage is None or stage.trigger is None:
        return None
    # A dry run reads what the trigger stored (its preview fires as a run would) and
    # writes nothing (deliver_events).
    found = store.trigger_state(stage.sync, stage.trigger.name)
    if found is None:
        raise ConfigError(f"state backend {project.state.get('backend')!r} cannot keep a "
                          "trigger's state; use the duckdb backend", file=str(project.file),
                          path="state.backend")
    stage.store = found
    return found


def narrowed(p: PreparedSync) -> StreamInfo:
    """The stream a run reads: with only the columns the gate and the stage read when
    the source reads only what it is asked for (``Source.projection``)."""
    if not p.source.projection:
        return p.stream
    stage = p.stage.columns_read() if p.stage else set()
    return p.stream.narrowed(p.gate.columns_read() | stage)


def apply(stage: ActivationStage | None, batch: pa.RecordBatch, keys: pa.Array
          ) -> tuple[pa.RecordBatch, pa.Array, TriggerBatch | None]:
    """:meth:`ActivationStage.apply` when the sync has a stage."""
    if stage is None:
        return batch, keys, None
    return stage.apply(batch, keys, fresh=stage.fresh)


def plan(state: SyncState, stage: ActivationStage | None, fired: TriggerBatch | None,
         mapped: MappedBatch) -> BatchPlan:
    """The planner's verdict, except for a trigger's events: every event that passed
    the gate is sent, one per crossing, whatever was sent before; its id derives from
    its number (the same when it is sent again)."""
    if fired is None or stage is None:
        return state.plan(mapped.keys, mapped.batch)
    return BatchPlan(pa.array(range(mapped.batch.num_rows), pa.int64()),
                     pa.array([], pa.int64()), 0, stage.event_hashes(fired, mapped.keys))


def delivery(deliver: Callable[[BatchDelivery], bool], job: BatchDelivery,
             fired: TriggerBatch | None, dry_run: bool) -> Callable[[], bool]:
    """What the delivery lane runs for one batch."""
    if fired is None:
        return partial(deliver, job)
    return partial(deliver_events, deliver, job, fired, dry_run)


def deliver_events(deliver: Callable[[BatchDelivery], bool], job: BatchDelivery,
                   fired: TriggerBatch, dry_run: bool) -> bool:
    """A trigger's batch: deliver, then store what the trigger saw of each key (a key
    that fired only if its event was acknowledged: the keys its state commits)."""
    job.acked = []
    ok = deliver(job)
    if not dry_run:
        fired.commit(pa.concat_arrays(job.acked) if job.acked else pa.array([], pa.string()))
    return ok

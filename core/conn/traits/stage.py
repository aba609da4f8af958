"""A sync's traits, audience and trigger, applied to each batch before the consent gate.

The runner calls :meth:`ActivationStage.apply` on every batch a source gives (each
run's batches and each micro-batch of a followed sync) before the consent gate: trait
columns are added by key, non-members of the sync's audience are left out (in mirror
mode the planner then removes them from the destination), and for a trigger's sync only
the rows whose key fires go on, with the event's columns. Those rows then take the
path every row takes: consent gate, mapper, destination. What the trigger stored for
each key is written with the delivery's acknowledgement (:meth:`TriggerBatch.commit`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.config.traits import Activation, Trigger
from conn.errors import ConfigError
from conn.traits.evaluate import Traits, TraitTable, raise_all, trait_errors
from conn.traits.triggers import Transition, evaluate, event_ids

if TYPE_CHECKING:
    from conn.config.model import SyncConfig
    from conn.source import Source, StreamInfo
    from conn.state.triggers import EntryIndex, TriggerStore

#: Columns a trigger's sync may map: when the run saw the crossing, the trigger's name
#: and the watched value.
TRIGGER_COLUMNS = pa.schema([("trigger_at", pa.timestamp("us", tz="UTC")),
                             ("trigger_name", pa.string()), ("trigger_value", pa.string())])


@dataclass
class TriggerBatch:
    """A batch's trigger verdict, committed on the delivery thread after the batch's
    delivery: entries of keys that did not fire at once, those of keys that fired only
    if the destination acknowledged their event."""

    store: TriggerStore
    keys: pa.Array
    transition: Transition
    #: The keys' ids (:func:`conn.state.planner.row_hashes.key_ids`).
    kids: np.ndarray
    #: Firing keys a holdout withheld: their firing is written as if acknowledged.
    held: pa.Array | None = None

    def commit(self, acked: pa.Array) -> None:
        """Write the changed entries: all but those of keys whose event was not
        acknowledged (not in ``acked``) nor held out (:attr:`held`)."""
        t = self.transition
        keep = t.write.copy()
        if self.held is not None and len(self.held):
            acked = pa.concat_arrays([acked.cast(pa.string()), self.held.cast(pa.string())])
        if t.fire.any():
            fired_ok = np.asarray(pc.is_in(self.keys, value_set=acked).fill_null(False)
                                  .to_numpy(zero_copy_only=False), dtype=bool) \
                if len(acked) else np.zeros(len(self.keys), dtype=bool)
            keep &= ~t.fire | fired_ok
        if not keep.any():
            return
        self.store.commit(entries(self.keys, self.kids, t, keep))


def entries(keys: pa.Array, kids: np.ndarray, t: Transition, mask: np.ndarray) -> pa.Table:
    """The new entries of the rows of ``mask`` (:data:`conn.state.triggers.SCHEMA`)."""
    from conn.state.triggers import SCHEMA

    return pa.Table.from_arrays(
        [pa.array(kids[mask], pa.uint64()), keys.filter(pa.array(mask)),
         pa.array(t.armed[mask]), t.value(mask), pa.array(t.fired_at[mask]),
         pa.array(t.seq[mask])], schema=SCHEMA)


class ActivationStage:
    """What a sync adds before its consent gate (see the module docstring)."""

    def __init__(self, traits: Traits | None, audience: str | None, trigger: Trigger | None,
                 trigger_audience: str | None, now: float, stream: pa.Schema,
                 sync: str = "") -> None:
        self.traits, self.audience, self.trigger = traits, audience, trigger
        self.trigger_audience = trigger_audience
        self.now, self.stream, self.sync = now, stream, sync
        self._table: TraitTable | None = None
        self.store: TriggerStore | None = None
        self._entries: EntryIndex | None = None
        #: Streaming runs: traits of each micro-batch's keys are computed for it.
        self.fresh = False
        #: The verdict of the batch last applied (a holdout marks its held-out keys).
        self._last: TriggerBatch | None = None

    def note_held(self, keys: pa.Array) -> None:
        """The firing keys of the batch last applied that a trigger's holdout withheld:
        their firing is recorded (the trigger's state advances) though nothing is sent."""
        if self._last is not None:
            self._last.held = keys

    def columns_read(self) -> set[str]:
        """Stream columns this stage reads (a source with projection reads them too)."""
        texts = [self.audience or "", self.trigger_audience or ""]
        if self.traits is not None:
            texts += [t.sql or "" for t in self.traits.derived]
        words = {w for text in texts for w in _words(text)}
        out = words & set(self.stream.names)
        if self.trigger is not None and self.trigger.on in self.stream.names:
            out.add(self.trigger.on)
        return out

    def fields(self) -> list[pa.Field]:
        """Columns this stage adds to the sync's stream (for the gate and the mapper)."""
        out = list(self.traits.schema(self.stream)) if self.traits is not None else []
        if self.trigger is not None:
            out += list(TRIGGER_COLUMNS)
        return out

    def _attach(self, batch: pa.RecordBatch, keys: pa.Array, fresh: bool) -> pa.RecordBatch:
        if self.traits is None:
            return batch
        if fresh:  # a micro-batch: these keys' traits as they are now
            table = self.traits.table(keys.drop_null().unique().to_pylist())
        else:
            if self._table is None:
                self._table = self.traits.table()
            table = self._table
        return table.attach(batch, keys)

    def apply(self, batch: pa.RecordBatch, keys: pa.Array, *, fresh: bool = False
              ) -> tuple[pa.RecordBatch, pa.Array, TriggerBatch | None]:
        """Traits added, audience applied and, for a trigger's sync, only firing rows."""
        batch = self._attach(batch, keys, fresh)
        if self.audience is not None:
            member = _condition(batch, self.audience)
            batch, keys = batch.filter(member), keys.filter(member)
        if self.trigger is None:
            return batch, keys, None
        assert self.store is not None, "open the trigger's state before applying it"
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        kids = _key_ids(keys)
        batch, keys, kids = _last_per_key(batch, keys, kids)
        if self.trigger_audience is not None:
            values = pc.cast(_condition(batch, self.trigger_audience), pa.int8())
        else:
            values = batch.column(self.trigger.on)
        t = evaluate(self.trigger, values, self._stored(keys, kids, fresh), self.now)
        fire = pa.array(t.fire)
        fired = batch.filter(fire)
        n = fired.num_rows
        text = t.value(t.fire)
        at = pa.array([datetime.fromtimestamp(self.now, UTC)] * n, TRIGGER_COLUMNS[0].type)
        cols = [*fired.columns, at, pa.array([self.trigger.name] * n, pa.string()), text]
        fired = pa.RecordBatch.from_arrays(
            cols, schema=pa.schema([*fired.schema, *TRIGGER_COLUMNS]))
        self._last = TriggerBatch(self.store, keys, t, kids)
        return fired, keys.filter(fire), self._last

    def _stored(self, keys: pa.Array, kids: np.ndarray, fresh: bool) -> pa.Table:
        """What the trigger stored for ``keys`` (ids ``kids``). A run reads every entry
        once and looks keys up by id (a key comes once per run); a micro-batch asks for
        its keys, as earlier micro-batches may have written them."""
        assert self.store is not None and self.trigger is not None
        if fresh:
            return self.store.load(keys, kids)
        if self._entries is None:
            from conn.state.triggers import EntryIndex

            self._entries = EntryIndex(self.store.layers())
        # A threshold trigger never reads the stored value (it writes the value now).
        return self._entries.lookup(keys, kids, values=self.trigger.kind == "change")

    def event_hashes(self, tb: TriggerBatch, keys: pa.Array) -> pa.Array:
        """A uint64 per event of ``keys`` (a subset of the fired keys): its id's hash."""
        from conn.duckdb_scan import duckdb_connection
        from conn.state.planner.row_hashes import key_ids

        assert self.trigger is not None
        at = pc.index_in(keys, value_set=tb.keys)
        seq = tb.transition.seq[np.asarray(at.to_numpy(zero_copy_only=False), dtype=np.int64)]
        ids = event_ids(self.trigger.name, keys, seq)
        return pa.array(key_ids(duckdb_connection(), ids), pa.uint64())  # type: ignore[arg-type]


def _key_ids(keys: pa.Array) -> np.ndarray:
    from conn.duckdb_scan import duckdb_connection
    from conn.state.planner.row_hashes import key_ids

    if not len(keys):
        return np.zeros(0, np.uint64)
    return np.asarray(key_ids(duckdb_connection(), keys), dtype=np.uint64)  # type: ignore[arg-type]


def _last_per_key(batch: pa.RecordBatch, keys: pa.Array, kids: np.ndarray
                  ) -> tuple[pa.RecordBatch, pa.Array, np.ndarray]:
    """A key twice in one batch is evaluated once, with its last row (a trigger compares
    each key's value with what it stored before the batch). Keys are told apart by their
    ids ``kids``, as the planner does."""
    ranked = np.sort(kids)
    if not len(kids) or not bool(np.any(ranked[1:] == ranked[:-1])):
        return batch, keys, kids
    order = np.argsort(kids, kind="stable")
    ranked = kids[order]
    last = np.ones(len(kids), dtype=bool)
    last[:-1] = ranked[1:] != ranked[:-1]  # the last of a run of equal ids: its last row
    idx = np.sort(order[last])
    return batch.take(pa.array(idx)), keys.take(pa.array(idx)), kids[idx]


def _words(text: str) -> set[str]:
    import re

    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def _condition(batch: pa.RecordBatch, sql: str) -> pa.Array:
    """A DuckDB condition over a batch's columns, per row (null counts as false)."""
    from conn.duckdb_scan import duckdb_connection

    con = duckdb_connection()
    rel = con.from_arrow(pa.Table.from_batches([batch]))  # type: ignore[attr-defined]
    out = rel.project(f"coalesce({sql}, false) AS m").to_arrow_table().column(0)
    return out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)


def build_stage(activation: Activation, sync: SyncConfig, stream: StreamInfo,
                open_source: Callable[[str], Source], now: datetime,
                file: str) -> ActivationStage | None:
    """The stage of ``sync`` (None when it uses no trait, audience or trigger). The
    traits used are those named in its mapping, consent settings, audience or trigger."""
    trig = activation.triggers.get(str(sync.raw.get("trigger"))) \
        if sync.raw.get("trigger") else None
    aud_name = sync.raw.get("audience")
    audience = activation.audiences.get(str(aud_name)) if aud_name else None
    trig_aud = activation.audiences.get(trig.audience) if trig and trig.audience else None
    words = json.dumps([sync.mapping, sync.consent, audience, trig_aud,
                        trig.on if trig and not trig.audience else None])
    used = activation.referenced(words)
    if not (used or audience or trig):
        return None
    if len(stream.primary_key) != 1 and used:
        raise ConfigError("traits join a stream by a one-column primary key; stream "
                          f"{stream.name!r} has {list(stream.primary_key)}", file=file,
                          path=f"syncs.{sync.name}.primary_key")
    raise_all(trait_errors(used, stream, file, sync.name))
    traits = Traits(activation, used, open_source, now.timestamp(), file) if used else None
    stage = ActivationStage(traits, audience, trig, trig_aud, now.timestamp(), stream.schema,
                            sync.name)
    if trig is not None and not trig.audience:
        known = set(stream.schema.names) | set(activation.traits)
        if trig.on not in known:
            raise ConfigError(f"trigger {trig.name!r} watches {trig.on!r}, which is neither "
                              f"a column of stream {stream.name!r} nor a trait", file=file,
                              path=f"triggers.{trig.name}.watch")
    return stage

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
from conn.traits.key_index import KeyIndex
from conn.traits.triggers import Transition, evaluate, event_ids

if TYPE_CHECKING:
    from conn.config.model import SyncConfig
    from conn.source import Source, StreamInfo
    from conn.state.triggers import TriggerStore

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

    def commit(self, acked: pa.Array) -> None:
        t = self.transition
        fired_ok = np.asarray(pc.is_in(self.keys, value_set=acked).fill_null(False)
                              .to_numpy(zero_copy_only=False), dtype=bool) \
            if len(acked) else np.zeros(len(self.keys), dtype=bool)
        keep = t.write & (~t.fire | fired_ok)
        if not keep.any():
            return
        mask = pa.array(keep)
        self.store.commit(pa.table({
            "key": self.keys.filter(mask), "armed": pa.array(t.armed).filter(mask),
            "value": t.value.filter(mask), "fired_at": pa.array(t.fired_at).filter(mask),
            "seq": pa.array(t.seq).filter(mask)}))


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
        self._entries: tuple[pa.Table, KeyIndex] | None = None
        #: Streaming runs: traits of each micro-batch's keys are computed for it.
        self.fresh = False

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
        batch, keys = _last_per_key(batch, keys)
        if self.trigger_audience is not None:
            values = pc.cast(_condition(batch, self.trigger_audience), pa.int8())
        else:
            values = batch.column(self.trigger.on)
        t = evaluate(self.trigger, values, self._stored(keys, fresh), self.now)
        fire = pa.array(t.fire)
        fired = batch.filter(fire)
        n = fired.num_rows
        text = t.value.filter(fire)
        at = pa.array([datetime.fromtimestamp(self.now, UTC)] * n, TRIGGER_COLUMNS[0].type)
        cols = [*fired.columns, at, pa.array([self.trigger.name] * n, pa.string()), text]
        fired = pa.RecordBatch.from_arrays(
            cols, schema=pa.schema([*fired.schema, *TRIGGER_COLUMNS]))
        return fired, keys.filter(fire), TriggerBatch(self.store, keys, t)

    def _stored(self, keys: pa.Array, fresh: bool) -> pa.Table:
        """What the trigger stored for ``keys``. A run reads every entry once and looks
        keys up by hash (a key comes once per run); a micro-batch asks for its keys, as
        earlier micro-batches may have written them."""
        assert self.store is not None
        if fresh:
            return self.store.load(keys)
        if self._entries is None:
            table = self.store.entries()
            self._entries = (table, KeyIndex(table.column("key")))
        table, index = self._entries
        at = index.positions(keys)
        cols = {"known": at.is_valid()}
        cols.update({n: table.column(n).take(at) for n in ("armed", "value", "fired_at", "seq")})
        return pa.table(cols)

    def event_hashes(self, tb: TriggerBatch, keys: pa.Array) -> pa.Array:
        """A uint64 per event of ``keys`` (a subset of the fired keys): its id's hash."""
        from conn.duckdb_scan import duckdb_connection
        from conn.state.planner.row_hashes import key_ids

        assert self.trigger is not None
        at = pc.index_in(keys, value_set=tb.keys)
        seq = tb.transition.seq[np.asarray(at.to_numpy(zero_copy_only=False), dtype=np.int64)]
        ids = event_ids(self.trigger.name, keys, seq)
        return pa.array(key_ids(duckdb_connection(), ids), pa.uint64())  # type: ignore[arg-type]


def _last_per_key(batch: pa.RecordBatch, keys: pa.Array) -> tuple[pa.RecordBatch, pa.Array]:
    """A key twice in one batch is evaluated once, with its last row (a trigger compares
    each key's value with what it stored before the batch)."""
    if pc.count_distinct(keys, mode="all").as_py() == len(keys):
        return batch, keys
    rows = pa.table({"k": keys, "i": pa.array(np.arange(len(keys)))})
    last = rows.group_by("k").aggregate([("i", "max")]).column("i_max").combine_chunks()
    idx = last.take(pc.sort_indices(last))
    return batch.take(idx), keys.take(idx)


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

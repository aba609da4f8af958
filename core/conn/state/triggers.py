"""Where a trigger keeps what it saw of each key (docs/traits.md, "Triggers").

Per key: its 64-bit key id (``kid``, DuckDB ``hash(key)`` as the planner computes it:
:func:`conn.state.planner.row_hashes.key_ids`), the key's text, whether the trigger is
armed, the last value (text; change triggers compare it), when it last fired (seconds
since 1970) and how many times (``seq``: the event's number, which its idempotency key
derives from). The runtime writes a key's new entry in the same step that commits the
destination's acknowledgement of its event, and only then; an entry of a key that did
not fire is written after its batch's delivery. Only changed entries are written.

A run reads every entry once, as one or more *layers* sorted by key id (later layers
win), and looks each batch's keys up by binary search (:class:`EntryIndex`): no text
key is hashed or compared but those of the batch. Backends: the DuckDB file per sync
and trigger (:mod:`conn.state.backends.duckdb.triggers`; the memory backend keeps the
same database in memory) and PostgreSQL (:mod:`conn.state.backends.postgres_triggers`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: The stored columns, with their Arrow types.
SCHEMA = pa.schema([("kid", pa.uint64()), ("key", pa.string()), ("armed", pa.bool_()),
                    ("value", pa.string()), ("fired_at", pa.float64()), ("seq", pa.int64())])
#: What a lookup gives per asked key: whether an entry is stored, then its columns.
STORED = pa.schema([("known", pa.bool_()), *[SCHEMA.field(n) for n in SCHEMA.names[2:]]])


class TriggerStore(ABC):
    """One trigger's entries for one sync (a state backend's
    :meth:`~conn.state.contracts.StateStore.trigger_state`). Calls come from the planning
    thread (:meth:`layers`, :meth:`load`) and the delivery thread (:meth:`commit`)."""

    @abstractmethod
    def load(self, keys: pa.Array, kids: np.ndarray) -> pa.Table:
        """The entries of ``keys`` (ids ``kids``), aligned with them (:data:`STORED`;
        all null and ``known`` false where none is stored). Micro-batches use it."""

    @abstractmethod
    def commit(self, rows: pa.Table) -> None:
        """Write entries (:data:`SCHEMA`), replacing those of the same keys."""

    @abstractmethod
    def entries(self) -> pa.Table:
        """Every entry (:data:`SCHEMA`), one per key, in no particular order."""

    def layers(self) -> list[pa.Table]:
        """Every entry as layers for :class:`EntryIndex` (a key's entry in a later layer
        replaces an earlier one). Read once per run of a scheduled sync."""
        return [self.entries()]

    @abstractmethod
    def forget(self, keys: list[str]) -> int:
        """Remove the entries of ``keys`` (``conn forget``: a key and its last watched
        value are personal data, no copy may remain); returns how many were removed."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (forget may already have)."""


def _u64(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.to_numpy(), dtype=np.uint64) if len(col) else np.zeros(0, np.uint64)


class EntryIndex:
    """Stored entries looked up by key id, vectorised: per layer the planner's probing
    table over its sorted ids (:class:`conn.state.planner.sorted_state.SortedState`,
    about 1.3 probes per key); a hit is confirmed on the key's text."""

    def __init__(self, layers: list[pa.Table]) -> None:
        from conn.state.planner.sorted_state import SortedState

        layers = [t.select(SCHEMA.names).cast(SCHEMA) for t in layers]
        table = pa.concat_tables(layers) if layers else SCHEMA.empty_table()
        self.table = table.combine_chunks()
        self._layers: list[tuple[int, SortedState, np.ndarray | None]] = []
        offset = 0
        for t in layers:
            ids = _u64(t.column("kid"))
            order = None
            if len(ids) > 1 and bool(np.any(ids[1:] < ids[:-1])):
                order = np.argsort(ids, kind="stable")
                ids = ids[order]
            if len(ids):
                self._layers.append((offset, SortedState(ids, np.zeros(len(ids), np.uint64)),
                                     order))
            offset += t.num_rows

    def lookup(self, keys: pa.Array, kids: np.ndarray, values: bool = True) -> pa.Table:
        """The entries of ``keys`` (ids ``kids``), aligned with them (:data:`STORED`;
        without ``values``, the stored values are left null: not read)."""
        n = len(keys)
        row = np.full(n, -1, dtype=np.int64)
        for offset, state, order in self._layers:
            at = state.find(kids)
            hit = at >= 0
            pos = at[hit]
            row[hit] = (order[pos] if order is not None else pos) + offset
        found = row >= 0
        if found.any():
            # Two keys may share an id: a hit counts only with the same text.
            texts = self.table.column("key").take(pa.array(row, mask=~found))
            found &= np.asarray(pc.equal(texts, keys).fill_null(False)
                                .to_numpy(zero_copy_only=False), dtype=bool)
        at = pa.array(row, pa.int64(), mask=~found)
        cols: list[pa.Array | pa.ChunkedArray] = [pa.array(found)]
        cols += [self.table.column(name).take(at) if values or name != "value"
                 else pa.nulls(n, pa.string()) for name in SCHEMA.names[2:]]
        return pa.Table.from_arrays(cols, schema=STORED)


class TriggerFiles:
    """For a file-based store with a ``root`` folder: a trigger's state in a DuckDB file
    per sync and trigger under ``root/triggers`` (see
    :meth:`conn.state.contracts.StateStore.trigger_state`)."""

    root: Path

    def trigger_state(self, sync: str, trigger: str) -> TriggerStore:
        from conn.state.backends.duckdb.triggers import open_file
        from conn.state.locks import safe_name

        return open_file(self.root / "triggers" / f"{safe_name(sync)}.{safe_name(trigger)}")

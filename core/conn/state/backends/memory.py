"""An in-process state store for tests and dry runs: Arrow tables, no files."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.errors import SyncLocked
from conn.state import contracts
from conn.state.contracts import NULL_KEY_ID, PrivacyStore, StateStore, Storage, SyncState
from conn.state.experiments import ExperimentStore
from conn.state.history import history_row
from conn.state.planner import PlanningSyncState
from conn.state.target import OnChange, SyncTarget, decide

if TYPE_CHECKING:
    from conn.state.triggers import TriggerStore

RECORDS_SCHEMA = pa.schema([("kid", pa.uint64()), ("key", pa.string()), ("hash", pa.uint64()),
                            ("match_value", pa.string()), ("partition", pa.uint16()),
                            ("match_type", pa.string()), ("run_id", pa.string()),
                            ("acked_at", pa.float64()), ("first_acked_at", pa.float64())])
REJECTIONS_SCHEMA = pa.schema([("kid", pa.uint64()), ("key", pa.string()),
                               ("partition", pa.uint16()), ("reason", pa.string()),
                               ("op", pa.string()), ("run_id", pa.string()),
                               ("at", pa.float64()), ("since", pa.float64()),
                               ("attempts", pa.int64()), ("excerpt", pa.string())])


@dataclass
class _SyncData:
    records: pa.Table = field(default_factory=RECORDS_SCHEMA.empty_table)
    rejections: pa.Table = field(default_factory=REJECTIONS_SCHEMA.empty_table)
    source_state: str | None = None
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: str | None = None

    def has_state(self) -> bool:
        return bool(self.records.num_rows or self.rejections.num_rows
                    or self.source_state is not None)


def _without(table: pa.Table, kids: pa.Array, extra: pa.Array | None = None) -> pa.Table:
    drop = pc.is_in(table.column("kid"), value_set=kids)
    if extra is not None:
        drop = pc.and_(drop, extra)
    return table.filter(pc.invert(drop))


class MemoryStorage(Storage):
    """:class:`Storage` over one :class:`_SyncData`."""

    def __init__(self, data: _SyncData) -> None:
        self.data = data

    def load(self, partitions: frozenset[int] | None) -> tuple[np.ndarray, np.ndarray]:
        t = self.data.records
        if partitions is not None:
            t = t.filter(pc.is_in(t.column("partition"), pa.array(sorted(partitions),
                                                                  pa.uint16())))
        t = t.sort_by("kid")
        return (t.column("kid").to_numpy().astype(np.uint64),
                t.column("hash").to_numpy().astype(np.uint64))

    def commit(self, run_id: str, rows: pa.Table, rejected: pa.Table, *,
               deletes: bool, match_type: str | None = None) -> None:
        d = self.data
        touched = pa.concat_arrays([rows.column("kid").combine_chunks(),
                                    rejected.column("kid").combine_chunks()])
        earlier = pc.not_equal(d.rejections.column("run_id"), run_id)
        replaced = d.rejections.filter(pc.and_(pc.is_in(d.rejections.column("kid"),
                                                        value_set=touched), earlier))
        rejections = _without(d.rejections, touched, earlier)
        records = _without(d.records, rows.column("kid").combine_chunks())
        if not deletes:
            n, now = rows.num_rows, time.time()
            add = rows.append_column("match_type", pa.array([match_type] * n, pa.string()))
            add = add.append_column("run_id", pa.array([run_id] * n, pa.string()))
            add = add.append_column("acked_at", pa.array([now] * n, pa.float64()))
            # A key delivered before keeps the time of its first delivery.
            at = pc.index_in(rows.column("kid").combine_chunks(),
                             value_set=d.records.column("kid").combine_chunks())
            first = d.records.column("first_acked_at").combine_chunks().take(at) \
                if d.records.num_rows else pa.nulls(n, pa.float64())
            add = add.append_column("first_acked_at", pc.fill_null(first, now))
            records = pa.concat_tables([records, add.select(RECORDS_SCHEMA.names)
                                        .cast(RECORDS_SCHEMA)])
        if rejected.num_rows:
            rejections = _add_rejections(rejections, replaced, rejected, run_id,
                                         "delete" if deletes else "write")
        d.records, d.rejections = records, rejections
        p = d.progress.setdefault(run_id, {"batches": 0, "acknowledged": 0, "rejected": 0,
                                           "deleted": 0})
        p["batches"] += 1
        p["deleted" if deletes else "acknowledged"] += rows.num_rows
        p["rejected"] += rejected.num_rows

    def lookup(self, kids: np.ndarray, batch_rows: int) -> Iterator[pa.RecordBatch]:
        t = self.data.records
        t = t.filter(pc.is_in(t.column("kid"), pa.array(kids, pa.uint64())))
        t = t.select(["key", "match_value", "match_type", "hash"])
        for b in t.to_batches(max_chunksize=batch_rows):
            if b.num_rows:
                yield b

    def rejection_kids(self, partitions: frozenset[int] | None) -> np.ndarray:
        return self.data.rejections.column("kid").to_numpy().astype(np.uint64)

    def clear_rejections(self, kids: np.ndarray) -> None:
        self.data.rejections = _without(self.data.rejections, pa.array(kids, pa.uint64()))

    def get_source_state(self) -> str | None:
        return self.data.source_state

    def set_source_state(self, run_id: str, value: str) -> None:
        self.data.source_state = value


class MemoryStateStore(StateStore):
    """State kept in this process only (lost at exit)."""

    def __init__(self) -> None:
        self._syncs: dict[str, _SyncData] = {}
        self._runs: list[dict[str, Any]] = []
        self._held: dict[str, dict[str, Any]] = {}
        self._mutex = threading.Lock()
        self._privacy: PrivacyStore | None = None
        self._notes: contracts.Notes | None = None
        self._experiments: ExperimentStore | None = None
        self._triggers: dict[tuple[str, str], Any] = {}

    def notes(self) -> contracts.Notes:
        """See :class:`~conn.state.contracts.Notes` (kept in this process)."""
        if self._notes is None:
            from conn.state.backends.notes import MemoryNotes

            self._notes = MemoryNotes()
        return self._notes

    def privacy(self) -> PrivacyStore:
        """See :class:`~conn.state.contracts.PrivacyStore` (kept in this process)."""
        if self._privacy is None:
            from conn.state.backends.memory_privacy import MemoryPrivacy

            self._privacy = MemoryPrivacy(self)
        return self._privacy

    def experiment_store(self) -> ExperimentStore:
        """See :class:`~conn.state.experiments.ExperimentStore` (kept in this process)."""
        if self._experiments is None:
            from conn.state.experiments import DuckDBExperiments, memory_connection

            self._experiments = DuckDBExperiments(memory_connection())
        return self._experiments

    def trigger_state(self, sync: str, trigger: str) -> TriggerStore:
        """An in-memory DuckDB database per sync and trigger, kept by this store."""
        import duckdb

        from conn.state.backends.duckdb.triggers import DuckDBTriggerStore

        with self._mutex:
            con = self._triggers.setdefault((sync, trigger), duckdb.connect())
        # The store keeps the database: the caller closes only its cursor.
        return DuckDBTriggerStore(con.cursor())

    @contextmanager
    def open_sync(self, sync: str, run_id: str, *, full_resync: bool = False,
                  partitions: frozenset[int] | None = None,
                  target: SyncTarget | None = None,
                  on_target_change: OnChange = None) -> Iterator[SyncState]:
        """See :meth:`StateStore.open_sync`; ``partitions`` limits the run to some
        partitions (the whole sync is still locked in this backend)."""
        with self._mutex:
            holder = self._held.get(sync)
            if holder is not None:
                raise SyncLocked(
                    f"sync {sync!r} is already running (run {holder['run_id']}, pid "
                    f"{holder['pid']} on {holder['host']}, since {holder['started']})")
            self._held[sync] = {"run_id": run_id, "pid": os.getpid(),
                                "host": socket.gethostname(),
                                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            data = self._syncs.setdefault(sync, _SyncData())
            if target is not None:
                decision = decide(sync, data.target, target, on_target_change,
                                  has_state=data.has_state())
                if decision == "reset":
                    data = self._syncs[sync] = _SyncData()
                if decision != "keep":
                    data.target = target.to_json()
            with PlanningSyncState(MemoryStorage(data), run_id, full_resync=full_resync,
                                   partitions=partitions) as st:
                yield st
        finally:
            with self._mutex:
                self._held.pop(sync, None)

    def record_run(self, sync: str, run_id: str, report: dict[str, Any]) -> None:
        self._runs.append(history_row(sync, run_id, report))

    def runs(self, sync: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        out = [r for r in reversed(self._runs) if sync is None or r["sync"] == sync]
        return out[:limit]

    def rejections(self, sync: str, limit: int | None = None) -> list[dict[str, Any]]:
        data = self._syncs.get(sync)
        if data is None:
            return []
        rows = data.rejections.sort_by([("at", "descending"), ("key", "ascending")])
        out = [{"key": r["key"], "reason": r["reason"], "op": r["op"], "run_id": r["run_id"],
                "at": _iso(r["at"]), "since": _iso(r["since"]), "attempts": r["attempts"],
                "excerpt": r["excerpt"]}
               for r in rows.to_pylist()]
        return out if limit is None else out[:limit]

    def stored_target(self, sync: str) -> str | None:
        data = self._syncs.get(sync)
        return data.target if data is not None else None

    def bound_target(self, sync: str) -> str | None:
        data = self._syncs.get(sync)
        return data.target if data is not None and data.has_state() else None

    def delivered(self, sync: str, keys: list[str]) -> list[dict[str, Any]]:
        data = self._syncs.get(sync)
        if data is None or not keys:
            return []
        t = data.records.filter(pc.is_in(data.records.column("key"),
                                         value_set=pa.array(keys, pa.string())))
        return [{"key": r["key"], "match_value": r["match_value"],
                 "match_type": r["match_type"], "acked_at": _iso(r["acked_at"]),
                 "first_acked_at": _iso(r["first_acked_at"]), "run_id": r["run_id"]}
                for r in t.to_pylist()]


def _add_rejections(rejections: pa.Table, replaced: pa.Table, rejected: pa.Table,
                    run_id: str, op: str) -> pa.Table:
    """``rejections`` with this commit's ``rejected`` rows: a key rejected in an earlier
    run keeps that entry's ``since`` and counts one more attempt; a key already rejected
    in this run keeps its one entry with the new reason appended (rows without a key are
    each listed)."""
    now = time.time()
    before = {r["kid"]: r for r in replaced.to_pylist()}
    rows = rejections.to_pylist()
    this_run = {r["kid"]: r for r in rows if r["run_id"] == run_id and r["kid"] != NULL_KEY_ID}
    for r in rejected.to_pylist():
        same = this_run.get(r["kid"])
        if same is not None:
            if r["reason"] not in same["reason"]:
                same["reason"] += "; " + r["reason"]
                same["excerpt"] = same["excerpt"] or r["excerpt"]
            continue
        earlier = before.get(r["kid"])
        row = {**r, "op": op, "run_id": run_id, "at": now,
               "since": earlier["since"] if earlier else now,
               "attempts": (earlier["attempts"] if earlier else 0) + 1}
        rows.append(row)
        if r["kid"] != NULL_KEY_ID:
            this_run[r["kid"]] = row
    return pa.Table.from_pylist(rows, schema=REJECTIONS_SCHEMA)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

"""The change planner, shared by every backend.

At the start of a run the backend hands over the acknowledged state of the opened
partitions, sorted by key id: each key's id and payload hash (16 bytes per key; the key
strings and match values stay in the database), with a probing table over the ids (see
:class:`~conn.state.planner.sorted_state.SortedState`). Each batch is hashed (the compiled
kernels of ``conn-speedups``, else DuckDB) and looked up (the compiled probe on two
threads, else numpy); no Python loop per row. Keys seen this run are marks over the state
positions plus a hash index of new keys, so duplicates are caught across batches. Only
deletions and commits go back to the backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from conn.errors import StateError
from conn.state import typed_text
from conn.state.contracts import NULL_KEY_ID, BatchPlan, Deletions, Storage, SyncState
from conn.state.planner import lookup, row_hashes
from conn.state.planner.marks import Scratch
from conn.state.planner.new_keys import NewKeyIndex
from conn.state.planner.run_changes import RunChanges
from conn.state.planner.sorted_state import LayeredState, SortedState

REASON_NULL = "null primary key"
REASON_DUPLICATE = "duplicate primary key {key!r} in this run (the first row is kept)"
#: What :meth:`PlanningSyncState._rejected_table` gives for a commit without rejections.
_NO_REJECTIONS = pa.schema([("kid", pa.uint64()), ("key", pa.string()),
                            ("partition", pa.uint16()), ("reason", pa.string()),
                            ("excerpt", pa.string())]).empty_table()


class PlanningSyncState(SyncState):
    """:class:`SyncState` over a :class:`Storage`; vectorised, bounded memory."""

    def __init__(self, storage: Storage, run_id: str, *, full_resync: bool = False,
                 partitions: frozenset[int] | None = None) -> None:
        self.storage = storage
        self.run_id = run_id
        self.full_resync = full_resync
        self.partitions = partitions
        self._con = row_hashes.connect()
        # Commits run on the runner's delivery thread while plan() hashes the next batch
        # here: a DuckDB connection must not be used by two threads at once.
        self._commit_con = self._con.cursor()
        self._hash_con = self._con.cursor()
        self.state: SortedState | LayeredState = storage.load_sorted(partitions)
        #: The state as loaded; a streaming run layers its own commits over it.
        self._opened = self.state
        #: This run's commits, kept once :meth:`rebase` was called (streaming runs).
        self._run_changes: RunChanges | None = None
        # Batches are hashed on this thread while their keys are looked up (see plan()),
        # unless there is nothing to look up. Its thread starts at the first use.
        self._hasher = (ThreadPoolExecutor(1, thread_name_prefix="conn-hash")
                        if len(self.state) else None)
        self._scratch = Scratch()
        self._lookup = lookup.choose(self.state, full_resync=full_resync,
                                     scratch=self._scratch, helper=self._hasher)
        self.new = NewKeyIndex()
        self._complete = False
        self._null_keys_rejected = False

    # --- helpers ------------------------------------------------------------------------

    def _check_partitions(self, kids: np.ndarray) -> None:
        if self.partitions is None:
            return
        parts = row_hashes.partitions_of(kids)
        outside = ~np.isin(parts, np.fromiter(self.partitions, dtype=np.uint16))
        if outside.any():
            raise StateError(
                f"{int(outside.sum())} row(s) belong to partitions this run did not open "
                f"(e.g. {int(parts[outside][0])}); route rows with "
                "conn.state.partition_of_keys() before planning")

    @property
    def seen(self) -> np.ndarray:
        """Boolean mask over the state's keys: seen in this run."""
        return self._lookup.marks.mask()

    # --- SyncState ----------------------------------------------------------------------

    def plan(self, keys: pa.Array, batch: pa.RecordBatch) -> BatchPlan:
        if len(keys) != batch.num_rows:
            raise ValueError(f"{len(keys)} keys for a batch of {batch.num_rows} rows")
        if self._hasher is None:
            # Nothing to look up (a first sync): one DuckDB pass is cheapest.
            kids, hashes = row_hashes.hash_batch(self._con, keys, batch)
            return self._plan(keys, kids, lambda: hashes)
        # The lookups need only the key ids: the payload hashes are computed on another
        # thread meanwhile (the kernels, numpy and DuckDB all release the GIL), which
        # then joins in the probe (see lookup.CompiledLookup).
        pending = self._hasher.submit(row_hashes.payload_hashes, self._hash_con, batch)
        try:
            kids = row_hashes.key_ids(self._con, keys)
            return self._plan(keys, kids, pending.result)
        finally:
            pending.exception()  # never leave the hashing connection busy

    def _plan(self, keys: pa.Array, kids: np.ndarray,
              payload_hashes: Callable[[], np.ndarray]) -> BatchPlan:
        n = len(kids)
        rejected: list[tuple[int, str]] = []
        if keys.null_count:
            valid = ~np.asarray(keys.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            rejected.extend((int(i), REASON_NULL) for i in np.flatnonzero(~valid))
            rows = np.flatnonzero(valid)
            q = kids[rows]
        else:
            rows, q = self._scratch.arange(n), kids
        self._check_partitions(q)
        found = self._lookup(rows, q, payload_hashes)
        _, fresh = self.new.add(kids[found.absent])
        inserts = found.absent[fresh]
        dups = np.concatenate([found.seen_before, found.absent[~fresh]])
        if dups.size:
            dups.sort()
            for i, key in zip(dups.tolist(), keys.take(pa.array(dups)).to_pylist(),
                              strict=True):
                rejected.append((i, REASON_DUPLICATE.format(key=key)))
            rejected.sort()
        return BatchPlan(inserts=pa.array(inserts, pa.int64()),
                         updates=pa.array(found.updates, pa.int64()),
                         unchanged=found.unchanged,
                         hashes=pa.array(found.hashes, pa.uint64()),
                         rejected=rejected,
                         previous=pa.array(found.previous, pa.uint64()))

    def touch(self, keys: pa.Array) -> None:
        if not len(keys):
            return
        kids = row_hashes.key_ids(self._con, keys)
        if keys.null_count:
            kids = kids[~np.asarray(keys.is_null().to_numpy(zero_copy_only=False), dtype=bool)]
        pos = self.state.find(kids)
        self._lookup.marks.set(pos[pos >= 0])
        # Keys new to the state are remembered too: their rejections must outlive the
        # end of the run (``finish`` clears rejections of keys not seen), and a later
        # row of the same key is a duplicate like any other.
        self.new.add(kids[pos < 0])

    def _rows_table(self, keys: pa.Array, kids: np.ndarray, idx: np.ndarray,
                    hashes: pa.Array | None, match_values: pa.Array | None) -> pa.Table:
        take = pa.array(idx, pa.int64())
        cols: dict[str, Any] = {
            "kid": pa.array(kids[idx], pa.uint64()),
            "key": keys.take(take).cast(pa.string()),
            "hash": (hashes.take(take).cast(pa.uint64()) if hashes is not None
                     else pa.nulls(len(idx), pa.uint64())),
            "match_value": (match_values.take(take) if match_values is not None
                            else pa.nulls(len(idx), pa.string())),
            "partition": pa.array(row_hashes.partitions_of(kids[idx]), pa.uint16()),
        }
        return pa.table(cols)

    def _rejected_table(self, keys: pa.Array, kids: np.ndarray,
                        rejected: list[tuple[int, str]],
                        excerpts: Mapping[int, str]) -> pa.Table:
        """One row per rejected key with its reasons and the first excerpt of its rows
        (several rows of one key in a batch: duplicates; rows without a key are each
        listed on their own)."""
        if not rejected:  # the usual commit: building the empty table cost 0.2 ms
            return _NO_REJECTIONS
        first: dict[int, int] = {}
        reasons: list[list[str]] = []
        idx: list[int] = []
        found: list[str | None] = []
        for i, reason in rejected:
            kid = int(kids[i])
            at = first.get(kid) if kid != NULL_KEY_ID else None
            if at is None:
                first[kid] = len(idx)
                idx.append(i)
                reasons.append([reason])
                found.append(excerpts.get(i))
                continue
            if reason not in reasons[at]:
                reasons[at].append(reason)
            found[at] = found[at] or excerpts.get(i)
        t = self._rows_table(keys, kids, np.array(idx, dtype=np.int64), None, None)
        return t.select(["kid", "key", "partition"]).append_column(
            "reason", pa.array(["; ".join(r) for r in reasons], pa.string())).append_column(
            "excerpt", pa.array(found, pa.string()))

    def _commit(self, keys: pa.Array, hashes: pa.Array | None, match_values: pa.Array | None,
                acknowledged: pa.Array, rejected: list[tuple[int, str]], deletes: bool,
                excerpts: Mapping[int, str] | None = None) -> None:
        if len(keys) != len(acknowledged):
            raise ValueError("keys and acknowledged must have the same length")
        keys = keys.cast(pa.string())
        kids = row_hashes.key_ids(self._commit_con, keys)
        ack_arr = acknowledged.cast(pa.bool_()).fill_null(False)
        ack = np.asarray(ack_arr.to_numpy(zero_copy_only=False), dtype=bool)
        if keys.null_count:
            # A row without a key cannot be acknowledged; its rejection is kept under key
            # id NULL_KEY_ID so that it is listed (and replaced by the next run's).
            isnull = np.asarray(keys.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            ack &= ~isnull
            kids = np.where(isnull, np.uint64(NULL_KEY_ID), kids)
            self._null_keys_rejected |= bool(isnull.any())
        match_type = None
        if match_values is not None:
            match_values, match_type = typed_text.to_text(match_values)
        rows = self._rows_table(keys, kids, np.flatnonzero(ack), hashes, match_values)
        rej = self._rejected_table(keys, kids, rejected, excerpts or {})
        self.storage.commit(self.run_id, rows, rej, deletes=deletes, match_type=match_type)
        if self._run_changes is not None:
            self._run_changes.add(rows, match_type, deleted=deletes)

    def commit(self, keys: pa.Array, hashes: pa.Array, match_values: pa.Array,
               acknowledged: pa.Array, rejected: list[tuple[int, str]],
               excerpts: Mapping[int, str] | None = None) -> None:
        self._commit(keys, hashes, match_values, acknowledged, rejected, deletes=False,
                     excerpts=excerpts)

    def deletions(self, batch_rows: int, legacy_type: pa.DataType | None = None
                  ) -> Iterator[Deletions]:
        unseen = self.state.kids_at(~self.seen)
        legacy = typed_text.type_token(legacy_type) if legacy_type is not None else None
        for found in self.storage.lookup(unseen, max(1, batch_rows)):
            for idx, values in typed_text.decode_groups(found.column("match_value"),
                                                        found.column("match_type"), legacy):
                part = found if len(idx) == found.num_rows else found.take(idx)
                yield Deletions(part.column("key"), values, part.column("hash"))
        self.finish()

    def commit_deletes(self, keys: pa.Array, acknowledged: pa.Array,
                       rejected: list[tuple[int, str]],
                       excerpts: Mapping[int, str] | None = None) -> None:
        self._commit(keys, None, None, acknowledged, rejected, deletes=True,
                     excerpts=excerpts)

    def save_source_state(self, value: Any) -> None:
        self.storage.set_source_state(self.run_id, json.dumps(value, sort_keys=True,
                                                              default=str))

    def source_state(self) -> Any:
        text = self.storage.get_source_state()
        return None if text is None else json.loads(text)

    # --- streaming ----------------------------------------------------------------------

    def rebase(self, keys: pa.Array | None = None) -> None:
        # The run's commits so far become the state planned against, and no key counts
        # as seen: the next batch is a new pass over a source whose rows change. Given
        # the batch's keys, only their changes are layered over the opened state.
        if self._run_changes is None:
            self._run_changes = RunChanges()
            self.storage.group_commits()
        elif keys is not None:
            self._run_changes.fold()
            kids = row_hashes.key_ids(self._con, keys.cast(pa.string()).drop_null())
            self.state = self._run_changes.layered(self._opened, kids)
        elif self._run_changes.fold():
            self.state = self._run_changes.layered(self._opened)
        if self._hasher is None and len(self.state):
            self._hasher = ThreadPoolExecutor(1, thread_name_prefix="conn-hash")
        self._scratch = Scratch()
        self._lookup = lookup.choose(self.state, full_resync=self.full_resync,
                                     scratch=self._scratch, helper=self._hasher)
        self.new = NewKeyIndex()

    def held(self, keys: pa.Array, batch_rows: int,
             legacy_type: pa.DataType | None = None) -> Iterator[Deletions]:
        keys = keys.cast(pa.string()).drop_null()
        if not len(keys):
            return
        kids = row_hashes.key_ids(self._con, keys)
        found: list[pa.Table | pa.RecordBatch] = []
        touched = np.zeros(len(kids), dtype=bool)
        if self._run_changes is not None:
            mine, touched = self._run_changes.held(kids)
            if mine.num_rows:
                found.append(mine.select(["key", "match_value", "match_type", "hash"]))
        before = kids[~touched]
        before = before[self._opened.find(before) >= 0]
        if len(before):
            found.extend(self.storage.lookup(before, max(1, batch_rows)))
        legacy = typed_text.type_token(legacy_type) if legacy_type is not None else None
        for part in found:
            for idx, values in typed_text.decode_groups(part.column("match_value"),
                                                        part.column("match_type"), legacy):
                sub = part if len(idx) == part.num_rows else part.take(idx)
                yield Deletions(_array(sub.column("key")), values, _array(sub.column("hash")))

    # --- extensions ---------------------------------------------------------------------

    def finish(self) -> None:
        """Declare the source fully read: rejections of keys not seen in this run (gone
        from the source or consent withdrawn) are cleared. Called by :meth:`deletions`
        once exhausted; call it after the last batch in other modes."""
        if self._complete:
            return
        self._complete = True
        kids = self.storage.rejection_kids(self.partitions)
        if not len(kids):
            return
        pos = self.state.find(kids)
        seen = np.zeros(len(kids), dtype=bool)
        seen[pos >= 0] = self.seen[pos[pos >= 0]]
        seen |= self.new.find(kids) >= 0
        if self._null_keys_rejected:
            seen |= kids == np.uint64(NULL_KEY_ID)
        if (~seen).any():
            self.storage.clear_rejections(kids[~seen])

    def __enter__(self) -> PlanningSyncState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close at the end of the ``with`` block, whatever happened in it."""
        self.close()

    def close(self) -> None:
        """End of the run: let the backend compact its change log. The run's in-memory
        key index is released first, so that the compaction (the run's largest DuckDB
        step) does not add to it: at 7M keys it is ~200 MB."""
        try:
            self.new = NewKeyIndex()
            self.state = SortedState(np.empty(0, np.uint64), np.empty(0, np.uint64))
            self._lookup = lookup.NumpyLookup(self.state, full_resync=False)
            self.storage.finish()
        finally:
            if self._hasher is not None:
                self._hasher.shutdown(wait=True)
            self._hash_con.close()
            self._commit_con.close()
            self._con.close()


def _array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col

"""The change planner, shared by every backend.

At the start of a run the backend hands over the acknowledged state of the opened
partitions as two uint64 arrays sorted by key id: ``kids`` and ``hashes`` (16 bytes per
key; the key strings and match values stay in the database). Each batch is hashed by
DuckDB and looked up with a radix directory over the sorted ids (numpy, no Python loop per
row). Keys seen this run are a bitmap over the state plus a hash index of new keys, so
duplicates are caught across batches. Only deletions and commits go back to the backend.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from conn.errors import StateError
from conn.state import hashing
from conn.state.base import BatchPlan, SyncState
from conn.state.index import KeyIndex

REASON_NULL = "null primary key"
REASON_DUPLICATE = "duplicate primary key {key!r} in this run (the first row is kept)"


class SortedState:
    """Sorted key ids with their payload hashes and a radix directory for lookups."""

    def __init__(self, kids: np.ndarray, hashes: np.ndarray) -> None:
        self.kids = np.ascontiguousarray(kids, dtype=np.uint64)
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        n = len(self.kids)
        if n > 1 and bool((self.kids[1:] < self.kids[:-1]).any()):
            order = np.argsort(self.kids, kind="stable")
            self.kids, self.hashes = self.kids[order], self.hashes[order]
        self.bits = max(1, min(30, int(n).bit_length()))
        self.shift = np.uint64(64 - self.bits)
        counts = np.bincount((self.kids >> self.shift).astype(np.intp),
                             minlength=1 << self.bits)
        self.start = np.zeros((1 << self.bits) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.start[1:])

    def __len__(self) -> int:
        return len(self.kids)

    def find(self, q: np.ndarray) -> np.ndarray:
        """Positions of ``q`` in :attr:`kids` (int64), -1 where absent."""
        result = np.full(len(q), -1, dtype=np.int64)
        if not len(self.kids) or not len(q):
            return result
        bucket = (q >> self.shift).astype(np.intp)
        pos = self.start[bucket]
        end = self.start[bucket + 1]
        active = np.flatnonzero(pos < end)
        pos, end, qa = pos[active], end[active], q[active]
        kids = self.kids
        while active.size:
            cur = kids[pos]
            hit = cur == qa
            result[active[hit]] = pos[hit]
            pos += 1
            go_on = (cur < qa) & (pos < end)
            active, pos, end, qa = active[go_on], pos[go_on], end[go_on], qa[go_on]
        return result


class Storage(abc.ABC):
    """What a backend stores for one sync; the planner does the rest."""

    @abc.abstractmethod
    def load(self, partitions: frozenset[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Acknowledged ``(kids, hashes)`` of the partitions, sorted by kid if cheap."""

    @abc.abstractmethod
    def commit(self, run_id: str, rows: pa.Table, rejected: pa.Table, *,
               deletes: bool) -> None:
        """In one transaction: record ``rows`` (kid, key, hash, match_value, partition)
        as acknowledged (or as deleted when ``deletes``); store ``rejected`` (kid, key,
        partition, reason) as this run's rejections, clearing earlier rejections of every
        key in either table; add the counts to the run's progress."""

    @abc.abstractmethod
    def lookup(self, kids: np.ndarray, batch_rows: int) -> Iterator[tuple[pa.Array, pa.Array]]:
        """Stored ``(keys, match_values)`` for ``kids``, in batches."""

    @abc.abstractmethod
    def rejection_kids(self, partitions: frozenset[int] | None) -> np.ndarray:
        """Key ids with a stored rejection."""

    @abc.abstractmethod
    def clear_rejections(self, kids: np.ndarray) -> None:
        """Forget rejections of keys that left the source."""

    @abc.abstractmethod
    def get_source_state(self) -> str | None:
        """The stored bookmark (JSON text)."""

    @abc.abstractmethod
    def set_source_state(self, run_id: str, value: str) -> None:
        """Store the bookmark (JSON text)."""

    def finish(self) -> None:  # noqa: B027 - optional
        """End of the run (success or not): compact, release resources."""


class PlanningSyncState(SyncState):
    """:class:`SyncState` over a :class:`Storage`; vectorised, bounded memory."""

    def __init__(self, storage: Storage, run_id: str, *, full_resync: bool = False,
                 partitions: frozenset[int] | None = None) -> None:
        self.storage = storage
        self.run_id = run_id
        self.full_resync = full_resync
        self.partitions = partitions
        self._con = hashing.connect()
        kids, hashes = storage.load(partitions)
        self.state = SortedState(kids, hashes)
        self.seen = np.zeros(len(self.state), dtype=bool)
        self._owner = np.zeros(len(self.state), dtype=np.int64)
        self.new = KeyIndex()
        self._complete = False

    # --- helpers ------------------------------------------------------------------------

    def _check_partitions(self, kids: np.ndarray, valid: np.ndarray) -> None:
        if self.partitions is None:
            return
        parts = hashing.partitions_of(kids[valid])
        outside = ~np.isin(parts, np.fromiter(self.partitions, dtype=np.uint16))
        if outside.any():
            raise StateError(
                f"{int(outside.sum())} row(s) belong to partitions this run did not open "
                f"(e.g. {int(parts[outside][0])}); route rows with "
                "conn.state.hashing.partition_of_keys() before planning")

    def _mark_seen(self, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Mark state positions seen; return the mask of rows seen first here."""
        owner = self._owner
        owner[pos[::-1]] = rows[::-1]  # the last write wins: the first row of the batch
        first = (owner[pos] == rows) & ~self.seen[pos]
        self.seen[pos[first]] = True
        return first

    # --- SyncState ----------------------------------------------------------------------

    def plan(self, keys: pa.Array, batch: pa.RecordBatch) -> BatchPlan:
        if len(keys) != batch.num_rows:
            raise ValueError(f"{len(keys)} keys for a batch of {batch.num_rows} rows")
        kids, hashes = hashing.hash_batch(self._con, keys, batch)
        n = len(kids)
        valid = np.ones(n, dtype=bool)
        rejected: list[tuple[int, str]] = []
        if keys.null_count:
            valid = ~np.asarray(keys.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            rejected.extend((int(i), REASON_NULL) for i in np.flatnonzero(~valid))
        self._check_partitions(kids, valid)
        rows = np.flatnonzero(valid)
        pos = self.state.find(kids[rows])
        known = pos >= 0
        k_rows, k_pos = rows[known], pos[known]
        first = self._mark_seen(k_rows, k_pos)
        ok_rows, ok_pos = k_rows[first], k_pos[first]
        if self.full_resync:
            changed = np.ones(len(ok_rows), dtype=bool)
        else:
            changed = self.state.hashes[ok_pos] != hashes[ok_rows]
        updates = ok_rows[changed]
        n_rows = rows[~known]
        _, fresh = self.new.add(kids[n_rows])
        inserts = n_rows[fresh]
        dups = np.concatenate([k_rows[~first], n_rows[~fresh]])
        if dups.size:
            dups.sort()
            for i, key in zip(dups.tolist(), keys.take(pa.array(dups)).to_pylist(),
                              strict=True):
                rejected.append((i, REASON_DUPLICATE.format(key=key)))
            rejected.sort()
        return BatchPlan(inserts=pa.array(inserts, pa.int64()),
                         updates=pa.array(updates, pa.int64()),
                         unchanged=int(len(ok_rows) - len(updates)),
                         hashes=pa.array(hashes, pa.uint64()),
                         rejected=rejected)

    def touch(self, keys: pa.Array) -> None:
        if not len(keys):
            return
        kids = hashing.key_ids(self._con, keys)
        if keys.null_count:
            kids = kids[~np.asarray(keys.is_null().to_numpy(zero_copy_only=False), dtype=bool)]
        pos = self.state.find(kids)
        self.seen[pos[pos >= 0]] = True

    def _rows_table(self, keys: pa.Array, kids: np.ndarray, idx: np.ndarray,
                    hashes: pa.Array | None, match_values: pa.Array | None) -> pa.Table:
        take = pa.array(idx, pa.int64())
        cols: dict[str, Any] = {
            "kid": pa.array(kids[idx], pa.uint64()),
            "key": keys.take(take).cast(pa.string()),
            "hash": (hashes.take(take).cast(pa.uint64()) if hashes is not None
                     else pa.nulls(len(idx), pa.uint64())),
            "match_value": (match_values.take(take).cast(pa.string())
                            if match_values is not None else pa.nulls(len(idx), pa.string())),
            "partition": pa.array(hashing.partitions_of(kids[idx]), pa.uint16()),
        }
        return pa.table(cols)

    def _rejected_table(self, keys: pa.Array, kids: np.ndarray,
                        rejected: list[tuple[int, str]]) -> pa.Table:
        idx = np.array([i for i, _ in rejected], dtype=np.int64)
        t = self._rows_table(keys, kids, idx, None, None).select(["kid", "key", "partition"])
        return t.append_column("reason", pa.array([r for _, r in rejected], pa.string()))

    def _commit(self, keys: pa.Array, hashes: pa.Array | None, match_values: pa.Array | None,
                acknowledged: pa.Array, rejected: list[tuple[int, str]], deletes: bool) -> None:
        if len(keys) != len(acknowledged):
            raise ValueError("keys and acknowledged must have the same length")
        kids = hashing.key_ids(self._con, keys)
        ack = np.asarray(acknowledged.fill_null(False).to_numpy(zero_copy_only=False),
                         dtype=bool)
        if keys.null_count:
            isnull = np.asarray(keys.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            ack &= ~isnull
            rejected = [(i, r) for i, r in rejected if not isnull[i]]
        rows = self._rows_table(keys, kids, np.flatnonzero(ack), hashes, match_values)
        rej = self._rejected_table(keys, kids, rejected)
        self.storage.commit(self.run_id, rows, rej, deletes=deletes)

    def commit(self, keys: pa.Array, hashes: pa.Array, match_values: pa.Array,
               acknowledged: pa.Array, rejected: list[tuple[int, str]]) -> None:
        self._commit(keys, hashes, match_values, acknowledged, rejected, deletes=False)

    def deletions(self, batch_rows: int) -> Iterator[tuple[pa.Array, pa.Array]]:
        unseen = self.state.kids[~self.seen]
        yield from self.storage.lookup(unseen, max(1, batch_rows))
        self.finish()

    def commit_deletes(self, keys: pa.Array, acknowledged: pa.Array,
                       rejected: list[tuple[int, str]]) -> None:
        self._commit(keys, None, None, acknowledged, rejected, deletes=True)

    def save_source_state(self, value: Any) -> None:
        self.storage.set_source_state(self.run_id, json.dumps(value, sort_keys=True,
                                                              default=str))

    def source_state(self) -> Any:
        text = self.storage.get_source_state()
        return None if text is None else json.loads(text)

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
        if (~seen).any():
            self.storage.clear_rejections(kids[~seen])

    def close(self) -> None:
        """End of the run: let the backend compact its change log."""
        try:
            self.storage.finish()
        finally:
            self._con.close()

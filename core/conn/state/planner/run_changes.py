"""What a long run committed so far, for planning its later batches against.

A batch run plans every batch against the state loaded when it opened: each key appears
once in a run. A streaming run (``conn sync --follow``) sees the same key change again
and again, so each micro-batch is a new pass: it must be planned against what the
destination acknowledged up to the previous micro-batch, including this run's own
commits, which a backend folds into its stored records only when the run ends.

:class:`RunChanges` keeps those commits in memory (key id, key, payload hash, typed match
value; tombstones for deletes), the latest per key once folded, so the planner can layer
them over the state it loaded (:class:`~conn.state.planner.sorted_state.LayeredState`)
and find the match value of a key acknowledged in this run when the stream deletes it.
Memory: about 60 bytes plus the key and match value per key changed in the run.
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa

from conn.state.planner.sorted_state import LayeredState, SortedState

_SCHEMA = pa.schema([("kid", pa.uint64()), ("key", pa.string()), ("hash", pa.uint64()),
                     ("match_value", pa.string()), ("match_type", pa.string()),
                     ("deleted", pa.bool_())])


#: Folded log chunks kept before they are combined into one (bounds the chunk count).
_MAX_CHUNKS = 64
#: Superseded rows the log may hold beyond twice its keys before it is compacted.
_SLACK = 65_536


class RunChanges:
    """The run's acknowledged changes: appended by commits (any thread), folded by
    :meth:`fold` (the latest change per key wins).

    Folded changes stay in an append-only log (Arrow tables); a sorted index over key
    ids points at each key's latest change. A fold sorts only the new changes and merges
    them into the index (a memory move over the index, no sort of the whole run), and
    the log is rewritten with only the latest changes once it holds twice as many rows:
    a long streaming run's pass costs about what its micro-batch holds, not what the run
    changed before it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[pa.Table] = []
        self._log: list[pa.Table] = []
        self._log_rows = 0
        #: Every key id changed in the run, sorted, and its latest change: row in the
        #: log, payload hash, whether it was a delete.
        self._kids = np.empty(0, dtype=np.uint64)
        self._rows = np.empty(0, dtype=np.int64)
        self._hashes = np.empty(0, dtype=np.uint64)
        self._deleted = np.empty(0, dtype=bool)

    def __len__(self) -> int:
        """Keys changed in the run (as of the last :meth:`fold`)."""
        return len(self._kids)

    def add(self, rows: pa.Table, match_type: str | None, *, deleted: bool) -> None:
        """Record committed ``rows`` (``kid``, ``key``, ``hash``, ``match_value`` as
        text) as acknowledged upserts, or as deletes when ``deleted``."""
        if not rows.num_rows:
            return
        n = rows.num_rows
        t = pa.table({
            "kid": rows.column("kid").cast(pa.uint64()),
            "key": rows.column("key").cast(pa.string()),
            "hash": rows.column("hash").cast(pa.uint64()),
            "match_value": rows.column("match_value").cast(pa.string()),
            "match_type": pa.nulls(n, pa.string()) if match_type is None
            else pa.array([match_type] * n, pa.string()),
            "deleted": pa.array(np.full(n, deleted)),
        }, schema=_SCHEMA)
        with self._lock:
            self._pending.append(t)

    def fold(self) -> bool:
        """Fold the changes added since the last fold into the index; whether anything
        changed."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return False
        t = pa.concat_tables(pending).combine_chunks()
        kids = t.column("kid").to_numpy()
        # The last occurrence of each key: the first one in reverse order (sorted by id).
        new_kids, first_rev = np.unique(kids[::-1], return_index=True)
        last = len(kids) - 1 - first_rev
        rows = self._log_rows + last
        hashes = t.column("hash").fill_null(0).to_numpy()[last]
        gone = np.asarray(t.column("deleted").to_numpy(zero_copy_only=False), dtype=bool)[last]
        self._log.append(t)
        self._log_rows += t.num_rows
        pos = np.searchsorted(self._kids, new_kids)
        known = pos < len(self._kids)
        known[known] = self._kids[pos[known]] == new_kids[known]
        at = pos[known]
        self._rows[at], self._hashes[at], self._deleted[at] = \
            rows[known], hashes[known], gone[known]
        fresh, where = ~known, pos[~known]
        if fresh.any():
            self._kids = np.insert(self._kids, where, new_kids[fresh])
            self._rows = np.insert(self._rows, where, rows[fresh])
            self._hashes = np.insert(self._hashes, where, hashes[fresh])
            self._deleted = np.insert(self._deleted, where, gone[fresh])
        if self._log_rows > 2 * len(self._kids) + _SLACK:
            # Mostly superseded changes: keep only each key's latest.
            self._log = [self._table().take(pa.array(self._rows, pa.int64()))]
            self._log_rows = len(self._kids)
            self._rows = np.arange(len(self._kids), dtype=np.int64)
        elif len(self._log) > _MAX_CHUNKS:
            self._log = [self._table().combine_chunks()]
        return True

    def _table(self) -> pa.Table:
        return pa.concat_tables(self._log) if self._log else _SCHEMA.empty_table()

    def _find(self, kids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index positions of ``kids`` and a mask of those the run changed."""
        kids = np.asarray(kids, dtype=np.uint64)
        pos = np.searchsorted(self._kids, kids)
        found = pos < len(self._kids)
        found[found] = self._kids[pos[found]] == kids[found]
        return pos, found

    def layered(self, opened: SortedState | LayeredState,
                kids: np.ndarray | None = None) -> SortedState | LayeredState:
        """The state loaded at the open with the run's latest changes on top: of every
        key, or of ``kids`` only (the keys the next batch holds: what it is planned
        against, at the cost of that batch rather than of the run)."""
        sel: slice | np.ndarray = slice(None)
        if kids is not None:
            pos, found = self._find(kids)
            sel = np.unique(pos[found])
        kids_, hashes = self._kids[sel], self._hashes[sel]
        gone = self._deleted[sel]
        if not len(kids_):
            return opened
        up_kids, up_hashes = kids_[~gone], hashes[~gone]
        if isinstance(opened, LayeredState):
            # Merge with the layer the backend served: this run's changes win.
            older = opened.upserts
            keep = ~np.isin(older.kids, kids_)
            up_kids = np.concatenate([older.kids[keep], up_kids])
            up_hashes = np.concatenate([older.hashes[keep], up_hashes])
            base, gone_kids = opened.base, np.concatenate([opened.gone, kids_[gone]])
        else:
            base, gone_kids = opened, kids_[gone]
        return LayeredState(base, SortedState(up_kids, up_hashes), gone_kids)

    def held(self, kids: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """The latest changes of ``kids`` made in this run (upserts only), and a mask
        over ``kids`` of those this run touched at all (upserted or deleted)."""
        pos, touched = self._find(kids)
        at = np.unique(pos[touched])
        at = at[~self._deleted[at]]
        if not len(at):
            return _SCHEMA.empty_table(), touched
        return self._table().take(pa.array(self._rows[at], pa.int64())), touched

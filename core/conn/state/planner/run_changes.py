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
import pyarrow.compute as pc

from conn.state.planner.sorted_state import LayeredState, SortedState

_SCHEMA = pa.schema([("kid", pa.uint64()), ("key", pa.string()), ("hash", pa.uint64()),
                     ("match_value", pa.string()), ("match_type", pa.string()),
                     ("deleted", pa.bool_())])


class RunChanges:
    """The run's acknowledged changes: appended by commits (any thread), folded by
    :meth:`fold` (the latest change per key wins)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[pa.Table] = []
        #: The latest change per key, as of the last :meth:`fold`.
        self.latest = _SCHEMA.empty_table()

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
        """Fold the changes added since the last fold into :attr:`latest`; whether
        anything changed."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return False
        t = pa.concat_tables([self.latest, *pending]).combine_chunks()
        kids = t.column("kid").to_numpy()
        # The last occurrence of each key: the first one in reverse order.
        _, first_rev = np.unique(kids[::-1], return_index=True)
        keep = np.sort(len(kids) - 1 - first_rev)
        self.latest = t.take(pa.array(keep, pa.int64()))
        return True

    def layered(self, opened: SortedState | LayeredState) -> SortedState | LayeredState:
        """The state loaded at the open with :attr:`latest` on top."""
        t = self.latest
        if not t.num_rows:
            return opened
        kids = t.column("kid").to_numpy()
        hashes = t.column("hash").fill_null(0).to_numpy()
        gone = np.asarray(t.column("deleted").to_numpy(zero_copy_only=False), dtype=bool)
        up_kids, up_hashes = kids[~gone], hashes[~gone]
        if isinstance(opened, LayeredState):
            # Merge with the layer the backend served: this run's changes win.
            older = opened.upserts
            keep = ~np.isin(older.kids, kids)
            up_kids = np.concatenate([older.kids[keep], up_kids])
            up_hashes = np.concatenate([older.hashes[keep], up_hashes])
            base, gone_kids = opened.base, np.concatenate([opened.gone, kids[gone]])
        else:
            base, gone_kids = opened, kids[gone]
        return LayeredState(base, SortedState(up_kids, up_hashes), gone_kids)

    def held(self, kids: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """The latest changes of ``kids`` made in this run (upserts only), and a mask
        over ``kids`` of those this run touched at all (upserted or deleted)."""
        t = self.latest
        touched = np.isin(kids, t.column("kid").to_numpy())
        if not touched.any():
            return t.slice(0, 0), touched
        mine = t.filter(pc.is_in(t.column("kid"), pa.array(kids, pa.uint64())))
        mine = mine.filter(pc.invert(mine.column("deleted")))
        return mine, touched

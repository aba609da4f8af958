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
#: An index level is merged into the one before it once it holds at least this share of
#: that one's entries, so the levels' sizes fall geometrically (a handful of levels). A
#: quarter: of 0.5, 0.25 and 0.125, the least fold and lookup time over 10M new keys.
_MERGE_SHARE = 0.25


class _Level:
    """Sorted, unique key ids and each one's latest change within the level: row in the
    log, payload hash, whether it was a delete."""

    __slots__ = ("deleted", "hashes", "kids", "rows")

    def __init__(self, kids: np.ndarray, rows: np.ndarray, hashes: np.ndarray,
                 deleted: np.ndarray) -> None:
        self.kids, self.rows, self.hashes, self.deleted = kids, rows, hashes, deleted

    def __len__(self) -> int:
        return len(self.kids)

    @staticmethod
    def merged(older: _Level, newer: _Level) -> _Level:
        """One level holding both; a key in both keeps ``newer``'s change."""
        kids = np.concatenate([older.kids, newer.kids])
        # Stable: of equal ids the older comes first, so the last of each run is newer's.
        # Two sorted runs back to back: timsort merges them in one pass.
        order = np.argsort(kids, kind="stable")
        ordered = kids[order]
        last = np.ones(len(ordered), dtype=bool)
        last[:-1] = ordered[1:] != ordered[:-1]
        take = order[last]
        return _Level(ordered[last], np.concatenate([older.rows, newer.rows])[take],
                      np.concatenate([older.hashes, newer.hashes])[take],
                      np.concatenate([older.deleted, newer.deleted])[take])


class RunChanges:
    """The run's acknowledged changes: appended by commits (any thread), folded by
    :meth:`fold` (the latest change per key wins).

    Folded changes stay in an append-only log (Arrow tables); an index over key ids
    points at each key's latest change. The index is a few sorted levels, newest last
    (a log-structured merge): a fold sorts only the new changes into a level of their
    own and merges it into the level before it once it has grown to a quarter of that
    one's size, so a fold costs about what its micro-batch holds however many keys the run
    changed before it (merging each fold into one sorted index instead made a flood's
    folds grow with the run: a memory move of the whole index each time). A lookup
    searches the levels from the newest. The log is rewritten with only the latest
    changes once it holds twice as many rows as the index has entries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[pa.Table] = []
        self._log: list[pa.Table] = []
        self._log_rows = 0
        self._levels: list[_Level] = []

    def __len__(self) -> int:
        """Keys changed in the run (as of the last :meth:`fold`)."""
        return len(self._index())

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
        gone = np.asarray(t.column("deleted").to_numpy(zero_copy_only=False), dtype=bool)
        self._levels.append(_Level(new_kids, self._log_rows + last,
                                   t.column("hash").fill_null(0).to_numpy()[last],
                                   gone[last]))
        self._log.append(t)
        self._log_rows += t.num_rows
        levels = self._levels
        while len(levels) > 1 and len(levels[-1]) >= _MERGE_SHARE * len(levels[-2]):
            self._merge_last()
        if self._log_rows > 2 * sum(map(len, levels)) + _SLACK:
            # Mostly superseded changes: keep only each key's latest.
            index = self._index()
            self._log = [self._table().take(pa.array(index.rows, pa.int64()))]
            self._log_rows = len(index)
            index.rows = np.arange(len(index), dtype=np.int64)
        elif len(self._log) > _MAX_CHUNKS:
            self._log = [self._table().combine_chunks()]
        return True

    def _index(self) -> _Level:
        """Every level merged into one (which then replaces them)."""
        if not self._levels:
            return _Level(np.empty(0, np.uint64), np.empty(0, np.int64),
                          np.empty(0, np.uint64), np.empty(0, bool))
        while len(self._levels) > 1:
            self._merge_last()
        return self._levels[0]

    def _merge_last(self) -> None:
        """The newest two levels become one."""
        self._levels[-2:] = [_Level.merged(*self._levels[-2:])]

    def _table(self) -> pa.Table:
        return pa.concat_tables(self._log) if self._log else _SCHEMA.empty_table()

    def _find(self, kids: np.ndarray) -> tuple[np.ndarray, _Level]:
        """Which of ``kids`` the run changed (a mask), and the latest change of each
        (aligned with ``kids``; meaningful where the mask is set)."""
        kids = np.asarray(kids, dtype=np.uint64)
        n = len(kids)
        found = np.zeros(n, dtype=bool)
        out = _Level(kids, np.zeros(n, np.int64), np.zeros(n, np.uint64), np.zeros(n, bool))
        for level in reversed(self._levels):  # the newest change of a key wins
            todo = np.flatnonzero(~found)
            if not len(todo):
                break
            want = kids[todo]
            pos = np.searchsorted(level.kids, want)
            hit = pos < len(level)
            hit[hit] = level.kids[pos[hit]] == want[hit]
            at, pos = todo[hit], pos[hit]
            found[at] = True
            out.rows[at], out.hashes[at], out.deleted[at] = \
                level.rows[pos], level.hashes[pos], level.deleted[pos]
        return found, out

    def layered(self, opened: SortedState | LayeredState,
                kids: np.ndarray | None = None) -> SortedState | LayeredState:
        """The state loaded at the open with the run's latest changes on top: of every
        key, or of ``kids`` only (the keys the next batch holds: what it is planned
        against, at the cost of that batch rather than of the run)."""
        if kids is None:
            index = self._index()
            kids_, hashes, gone = index.kids, index.hashes, index.deleted
        else:
            found, latest = self._find(np.unique(np.asarray(kids, dtype=np.uint64)))
            kids_, hashes, gone = latest.kids[found], latest.hashes[found], \
                latest.deleted[found]
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
        touched, latest = self._find(kids)
        rows = np.unique(latest.rows[touched & ~latest.deleted])
        if not len(rows):
            return _SCHEMA.empty_table(), touched
        return self._table().take(pa.array(rows, pa.int64())), touched

"""The acknowledged state as the planner looks it up: key ids sorted, each next to its
payload hash, with an ordered linear-probing table over the ids (:class:`SortedState`), and
an older state with the changes of later runs on top (:class:`LayeredState`).

The probing table's layout is defined here once: :func:`table_layout` (its shape for
``n`` ids) and :func:`table_positions` (where each id sits), used both to build a state
in memory and, slice by slice, to stream one to a cache file.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from conn.state.planner import kernels

#: What the compiled probe writes per row: position (int64), stored hash (uint64) and
#: flag (uint8: 0 absent, 1 first sighting in the run, 2 duplicate).
ProbeOut = tuple[np.ndarray, np.ndarray, np.ndarray]


class TableLayout(NamedTuple):
    """The shape of the probing table over ``n`` sorted ids (see :func:`table_layout`)."""

    #: An id's home slot is ``id >> shift``: its top bits.
    shift: np.uint64
    #: The entries' type; an entry holds position + 1, so that 0 (a zeroed, lazily
    #: allocated table) is an empty slot.
    dtype: np.dtype
    #: Number of home slots (``2**bits``, about twice the ids: a load of at most a half).
    slots: int

    def size(self, last_position: int) -> int:
        """The table's length given the last id's position. Probing never wraps: the
        table covers every home slot (a query's can lie past the last stored position)
        and every position, plus one empty slot that ends every probe."""
        return max(last_position + 2, self.slots + 1)


def table_layout(n: int) -> TableLayout:
    """The probing table's shape for ``n`` ids."""
    bits = max(1, min(40, n.bit_length() + 1))
    return TableLayout(np.uint64(64 - bits), np.dtype(np.int32 if n < 2**31 - 1 else np.int64),
                       1 << bits)


def table_positions(kids: np.ndarray, shift: np.uint64, *, start: int = 0,
                    after: int | None = None, index_type: type = np.int64
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Where the sorted ids ``kids`` sit in the probing table: each at
    ``max(home slot, previous position + 1)``, so one ``np.maximum.accumulate`` places
    them all (no rehashing, sequential writes).

    ``kids`` may be a slice of the state: its entries ``start ..``, with ``after`` the
    position of entry ``start - 1``; slice by slice, the positions equal the whole's.
    Returns ``(indices, positions)``: each entry's index (``index_type``) and position
    (int64), both fresh arrays the caller may reuse."""
    i: np.ndarray = np.arange(start, start + len(kids), dtype=index_type)
    # Home slots are < 2**40, so the uint64 shift result can be read as int64.
    pos = (kids >> shift).view(np.int64)
    pos -= i
    if after is not None and len(pos):
        pos[0] = max(pos[0], after + 1 - start)
    np.maximum.accumulate(pos, out=pos)
    pos += i
    return i, pos


class Layer(NamedTuple):
    """One sorted layer of a state, as the compiled probe looks it up: positions from
    ``offset`` on, and ``hidden``, the bitmap of entries a later layer replaced."""

    state: SortedState
    offset: int
    hidden: np.ndarray | None


class SortedState:
    """The state's key ids (sorted) and payload hashes, with an ordered linear-probing
    table over the ids' top bits.

    Because the ids are sorted, every id's table position is
    ``max(home slot, previous position + 1)`` (:func:`table_positions`): the table is
    built in O(n) with sequential writes (no rehashing, no sort). A lookup probes from the
    home slot and stops at an empty slot or a larger id; about 1.3 probes on average at
    the table's load of at most one half.
    """

    def __init__(self, kids: np.ndarray, hashes: np.ndarray) -> None:
        kids = np.asarray(kids, dtype=np.uint64)
        pairs = np.empty(2 * len(kids), dtype=np.uint64)
        pairs[0::2], pairs[1::2] = kids, np.asarray(hashes, dtype=np.uint64)
        self._build(pairs)

    @classmethod
    def from_pairs(cls, pairs: np.ndarray) -> SortedState:
        """A state over ``pairs`` (id, hash, id, hash, ...; sorted by id unless a
        backend could not), as a backend fills them batch by batch: no second copy of
        the state is held while the probing table is built."""
        self = cls.__new__(cls)
        self._build(np.ascontiguousarray(pairs, dtype=np.uint64))
        return self

    def _build(self, pairs: np.ndarray) -> None:
        kids = pairs[0::2]
        n = len(kids)
        if n > 1 and bool((kids[1:] < kids[:-1]).any()):
            order = np.argsort(kids, kind="stable")
            pairs = pairs.reshape(-1, 2)[order].ravel()
        self._set_pairs(pairs)
        layout = table_layout(n)
        self.shift = layout.shift
        if n:
            # In place, with as few fresh arrays as possible: first-touch page faults of
            # new memory cost more than the arithmetic here (0.9 -> 0.45 s at 10M keys).
            i, pos = table_positions(self.kids, layout.shift, index_type=layout.dtype.type)
            self.table = np.zeros(layout.size(int(pos[-1])), dtype=layout.dtype)
            i += 1  # entries hold position + 1
            self.table[pos] = i
            del pos, i
        else:
            self.table = np.zeros(1, dtype=layout.dtype)

    def _set_pairs(self, pairs: np.ndarray) -> None:
        # Id and hash side by side: a lookup that finds its id has the stored hash in
        # the same cache line (the compiled probe is bound by cache misses).
        self.pairs = pairs
        self.kids, self.hashes = pairs[0::2], pairs[1::2]

    @classmethod
    def from_parts(cls, pairs: np.ndarray, table: np.ndarray) -> SortedState | None:
        """A state over already-built parts (e.g. memory-mapped from a cache written by
        :meth:`parts`); ``None`` if they do not fit together (the caller rebuilds)."""
        n = len(pairs) // 2
        layout = table_layout(n)
        if (pairs.dtype != np.uint64 or table.dtype != layout.dtype or pairs.ndim != 1
                or table.ndim != 1 or len(pairs) % 2 or len(table) < layout.slots + 1
                or (not n and len(table) != 1)):
            return None
        self = cls.__new__(cls)
        self._set_pairs(pairs)
        self.table = table
        self.shift = layout.shift
        return self

    def parts(self) -> dict[str, np.ndarray]:
        """The arrays :meth:`from_parts` takes: ``pairs`` (id, hash, id, hash, ...) and
        ``table``."""
        return {"pairs": self.pairs, "table": self.table}

    def __len__(self) -> int:
        return len(self.kids)

    @property
    def effective(self) -> int:
        """Number of acknowledged keys (every position holds one)."""
        return len(self)

    @property
    def hidden(self) -> np.ndarray:
        """Positions that read as absent (none here; see :class:`LayeredState`)."""
        return np.empty(0, dtype=np.int64)

    def hashes_at(self, pos: np.ndarray) -> np.ndarray:
        """Stored payload hashes at positions ``pos``."""
        return self.hashes[pos]

    def kids_at(self, mask: np.ndarray) -> np.ndarray:
        """Key ids of the positions where ``mask`` (one bool per position) is set."""
        return self.kids[mask]

    def layers(self) -> list[Layer]:
        """The state as the compiled probe sees it: one layer."""
        return [Layer(self, 0, None)]

    def probe(self, seen: np.ndarray, q: np.ndarray, out: ProbeOut, *,
              rows: np.ndarray | None = None, offset: int = 0,
              hidden: np.ndarray | None = None, only_absent: bool = False,
              atomic: bool = False) -> None:
        """The compiled one-pass lookup of rows ``rows`` of ``q`` (all if None; see
        ``conn_speedups.probe``) into ``out``: positions (plus ``offset``), stored hashes
        and flags. ``seen`` is the run's bitmap of this state's positions."""
        kernels.probe(self.table, self.pairs, seen, hidden, int(self.shift), q, out, rows=rows,
                    offset=offset, only_absent=only_absent, atomic=atomic)

    def find(self, q: np.ndarray) -> np.ndarray:
        """Positions of ``q`` in :attr:`kids` (int64), -1 where absent."""
        result = np.full(len(q), -1, dtype=np.int64)
        if not len(self.kids) or not len(q):
            return result
        table, kids = self.table, self.kids
        slot = (q >> self.shift).astype(np.intp)
        held = table[slot]  # position + 1; 0 is empty
        cur = kids[held - 1]  # an empty slot reads the last id; masked below
        occupied = held != 0
        hit = occupied & (cur == q)
        result[hit] = held[hit] - 1
        active = np.flatnonzero(occupied & (cur < q))
        slot = slot[active]
        while active.size:
            slot += 1
            qa = q[active]
            held = table[slot]
            cur = kids[held - 1]
            occupied = held != 0
            hit = occupied & (cur == qa)
            result[active[hit]] = held[hit] - 1
            go_on = occupied & (cur < qa)
            active, slot = active[go_on], slot[go_on]
        return result


#: Stamp of a base entry that a :class:`LayeredState` hides (deleted or superseded).
HIDDEN = -2


class LayeredState:
    """A :class:`SortedState` (the memory-mapped cache of an earlier run) with the
    acknowledged changes of the runs since on top: ``upserts`` (a small SortedState of
    ids with their new hashes) and ``gone`` (ids deleted from the base). Positions
    ``0 .. len(base)`` are the base's, the upserts' follow. Base entries that are
    deleted or upserted are hidden: their seen-mark is set from the start of a run (a
    :data:`HIDDEN` stamp on the numpy path), lookups skip them and they are never
    reported as deletions.

    It lets a run that changed 1 % of 10M keys write a few MB of cache instead of
    rewriting 300 MB (see ``DuckDBStorage.write_cache``)."""

    def __init__(self, base: SortedState, upserts: SortedState, gone: np.ndarray) -> None:
        self.base, self.upserts = base, upserts
        self.gone = np.ascontiguousarray(gone, dtype=np.uint64)
        hidden = np.concatenate([base.find(self.gone), base.find(upserts.kids)])
        self.hidden = np.unique(hidden[hidden >= 0])
        self._mask = np.zeros(len(base), dtype=bool)
        self._mask[self.hidden] = True
        self._hidden_bits = np.packbits(self._mask, bitorder="little")

    def __len__(self) -> int:
        return len(self.base) + len(self.upserts)

    @property
    def effective(self) -> int:
        """Number of acknowledged keys (positions minus hidden base entries)."""
        return len(self) - len(self.hidden)

    def find(self, q: np.ndarray) -> np.ndarray:
        nb = len(self.base)
        top = self.upserts.find(q)
        result = np.where(top >= 0, top + nb, -1)
        miss = np.flatnonzero(top < 0)
        pos = self.base.find(q[miss])
        pos[pos >= 0] = np.where(self._mask[pos[pos >= 0]], -1, pos[pos >= 0])
        result[miss] = pos
        return result

    def hashes_at(self, pos: np.ndarray) -> np.ndarray:
        nb = len(self.base)
        in_base = pos < nb
        out = np.empty(len(pos), dtype=np.uint64)
        out[in_base] = self.base.hashes[pos[in_base]]
        out[~in_base] = self.upserts.hashes[pos[~in_base] - nb]
        return out

    def kids_at(self, mask: np.ndarray) -> np.ndarray:
        nb = len(self.base)
        return np.concatenate([self.base.kids[mask[:nb]], self.upserts.kids[mask[nb:]]])

    def layers(self) -> list[Layer]:
        """Upserts first: a key found there is not looked up in the base, where its
        older entry is hidden."""
        return [Layer(self.upserts, len(self.base), None),
                Layer(self.base, 0, self._hidden_bits)]

"""A vectorised open-addressing hash index of 64-bit key ids (numpy, linear probing).

The planner keeps one entry per primary key of the sync: the state's keys first (loaded
at the start of a run), then the keys first seen in this run. Lookups and insertions
work on whole arrays, one probing round at a time, so a batch costs a handful of numpy
gathers and scatters rather than a Python loop per row. Memory: 8 bytes per key for the
ids plus 8 (or 16) bytes per slot of the table, kept under half full.
"""

from __future__ import annotations

import numpy as np

from conn.state.planner import kernels

_EMPTY = -1
#: Entries re-inserted per step when the table grows.
_REHASH_SLICE = 1 << 20


class NewKeyIndex:
    """Maps uint64 key ids to dense positions ``0..len-1`` in insertion order."""

    def __init__(self, kids: np.ndarray | None = None) -> None:
        self._kids = np.empty(16, dtype=np.uint64)
        self._n = 0
        self._table = np.full(32, _EMPTY, dtype=np.int64)
        if kids is not None and len(kids):
            self._reserve(len(kids))
            self.add(np.ascontiguousarray(kids, dtype=np.uint64))

    def __len__(self) -> int:
        return self._n

    @property
    def kids(self) -> np.ndarray:
        """The key ids by position (a view; do not modify)."""
        return self._kids[: self._n]

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need > len(self._kids):
            cap = max(need, 2 * len(self._kids))
            grown = np.empty(cap, dtype=np.uint64)
            grown[: self._n] = self._kids[: self._n]
            self._kids = grown
        if 2 * need > len(self._table):
            size = 1 << max(5, (2 * need).bit_length())
            self._table = np.full(size, _EMPTY, dtype=np.int32 if size < 2**31 else np.int64)
            # Re-insert in slices: _place's temporaries (~40 bytes per entry) then stay
            # bounded instead of spiking with the index size (+300 MB at 7M keys).
            compiled = kernels.available()
            for lo in range(0, self._n, _REHASH_SLICE):
                hi = min(self._n, lo + _REHASH_SLICE)
                if compiled:  # every id is fresh: each stays where it is
                    kernels.index_add(self._table, self._kids, lo, self._kids[lo:hi])
                else:
                    self._place(np.arange(lo, hi, dtype=np.int64), self._kids[lo:hi])

    def _slots(self, kids: np.ndarray) -> np.ndarray:
        # Key ids are already well-mixed hashes; their low bits spread evenly.
        return (kids & np.uint64(len(self._table) - 1)).astype(np.int64)

    def _place(self, positions: np.ndarray, kids: np.ndarray) -> np.ndarray:
        """Insert ``positions`` (whose ids are ``kids``) into the table. Returns, per
        input, the position now holding that id: itself, or an earlier entry with the
        same id (an earlier input of the same call wins)."""
        table = self._table
        mask = len(table) - 1
        result = np.empty(len(positions), dtype=np.int64)
        active = np.arange(len(positions))
        slots = self._slots(kids)
        while active.size:
            held = table[slots]
            empty = held == _EMPTY
            # Write the free slots in reverse order so the first writer of a slot wins.
            e_idx = np.flatnonzero(empty)[::-1]
            table[slots[e_idx]] = positions[active[e_idx]]
            held = table[slots]
            same = self._kids[held] == kids[active]
            result[active[same]] = held[same]
            go_on = ~same
            active = active[go_on]
            slots = (slots[go_on] + 1) & mask
        return result

    def find(self, kids: np.ndarray) -> np.ndarray:
        """Positions of ``kids`` (int64), -1 where absent."""
        table = self._table
        mask = len(table) - 1
        result = np.full(len(kids), -1, dtype=np.int64)
        active = np.arange(len(kids))
        slots = self._slots(kids)
        while active.size:
            held = table[slots].astype(np.int64, copy=False)
            occupied = held != _EMPTY
            hit = occupied & (self._kids[np.where(occupied, held, 0)] == kids[active])
            result[active[hit]] = held[hit]
            go_on = occupied & ~hit
            active = active[go_on]
            slots = (slots[go_on] + 1) & mask
        return result

    def add(self, kids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append ids not yet present. Returns ``(positions, fresh)``: each input's
        position and whether this call created it (False for an id already present or
        repeated earlier in ``kids``)."""
        kids = np.ascontiguousarray(kids, dtype=np.uint64)
        self._reserve(len(kids))
        if kernels.available():
            placed, fresh = kernels.index_add(self._table, self._kids, self._n, kids)
            self._n += int(fresh.sum())
            return placed, fresh
        start = self._n
        new_pos = np.arange(start, start + len(kids), dtype=np.int64)
        self._kids[start : start + len(kids)] = kids
        placed = self._place(new_pos, kids)
        fresh = placed == new_pos
        # Compact: fresh entries keep consecutive positions; drop the others.
        n_fresh = int(fresh.sum())
        if n_fresh != len(kids):
            remap = np.full(len(kids), -1, dtype=np.int64)
            remap[fresh] = np.arange(start, start + n_fresh)
            self._kids[start : start + n_fresh] = kids[fresh]
            # Re-point table entries of fresh ids to their compacted position.
            moved = fresh & (remap != new_pos)
            if moved.any():
                slot_of = self._locate_slots(new_pos[moved], kids[moved])
                self._table[slot_of] = remap[moved]
            in_batch = placed >= start
            placed = np.where(in_batch, remap[np.clip(placed - start, 0, None)], placed)
        self._n = start + n_fresh
        return placed, fresh

    def _locate_slots(self, positions: np.ndarray, kids: np.ndarray) -> np.ndarray:
        table = self._table
        mask = len(table) - 1
        out = np.empty(len(positions), dtype=np.int64)
        active = np.arange(len(positions))
        slots = self._slots(kids)
        while active.size:
            hit = table[slots] == positions[active]
            out[active[hit]] = slots[hit]
            active = active[~hit]
            slots = (slots[~hit] + 1) & mask
        return out

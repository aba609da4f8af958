"""The run's seen-marks over the state's positions, and the planner's scratch arrays.

A key seen in a run is never reported as a deletion, and a second row of it in the same
run is a duplicate. The compiled probe reads and sets bits (:class:`SeenBits`); the numpy
path stamps positions with the row that claimed them (:class:`SeenStamps`).
"""

from __future__ import annotations

import numpy as np

from conn.state.planner.sorted_state import HIDDEN, LayeredState, ProbeOut, SortedState


class SeenBits:
    """The run's seen-marks as the compiled probe reads and sets them: per layer of the
    state, one bit per position (1.25 MB at 10M keys, so they stay in the CPU's cache).
    Hidden entries start as seen, so that they are never reported as deletions.

    Probing is shared by two threads through ranges of key ids (:attr:`cuts`) whose
    positions in the largest layer start at multiples of 8, so that no two ranges write
    the same byte there; the smaller layers are written with atomic operations."""

    #: Ranges per batch: enough for the two threads to even out, few enough that the
    #: pass each makes over the batch's ids stays cheap.
    RANGES = 4

    def __init__(self, state: SortedState | LayeredState) -> None:
        self.n = len(state)
        self.layers = state.layers()
        self.bits = [np.zeros((len(layer.state) + 7) // 8, dtype=np.uint8)
                     if layer.hidden is None else layer.hidden.copy()
                     for layer in self.layers]
        big = max(range(len(self.layers)), key=lambda i: len(self.layers[i].state))
        self.atomic = [i != big for i in range(len(self.layers))]
        kids = self.layers[big].state.kids
        at = sorted({(len(kids) * r // self.RANGES) & ~7 for r in range(1, self.RANGES)} - {0})
        #: Key ids where the ranges after the first start (see ``conn_speedups.split``).
        self.cuts = np.array([kids[c] for c in at], dtype=np.uint64)

    def probe(self, q: np.ndarray, out: ProbeOut, rows: np.ndarray | None = None) -> None:
        """Look up the rows ``rows`` of ``q`` (all if None) in every layer."""
        for i, layer in enumerate(self.layers):
            layer.state.probe(self.bits[i], q, out, rows=rows, offset=layer.offset,
                              hidden=layer.hidden, only_absent=i > 0, atomic=self.atomic[i])

    def set(self, pos: np.ndarray) -> None:
        """Mark positions ``pos`` seen."""
        pos = np.asarray(pos, dtype=np.int64)
        for layer, bits in zip(self.layers, self.bits, strict=True):
            p = pos[(pos >= layer.offset) & (pos < layer.offset + len(layer.state))]
            p -= layer.offset
            np.bitwise_or.at(bits, p >> 3, np.left_shift(1, p & 7).astype(np.uint8))

    def mask(self) -> np.ndarray:
        """Boolean mask over the positions: seen (or hidden)."""
        mask = np.empty(self.n, dtype=bool)
        for layer, bits in zip(self.layers, self.bits, strict=True):
            n = len(layer.state)
            mask[layer.offset:layer.offset + n] = np.unpackbits(
                bits, count=n, bitorder="little").view(bool)
        return mask


class SeenStamps:
    """The run's seen-marks on the numpy path: per state position 0 if not seen, -1 if
    touched, :data:`HIDDEN` for a hidden entry, else 1 + the row number (in its batch)
    of the row that last claimed it (see :meth:`first_sightings`). int32: half the
    memory and cache misses of run-wide int64 row numbers."""

    def __init__(self, n: int, hidden: np.ndarray) -> None:
        self.stamp = np.zeros(n, dtype=np.int32)
        self.stamp[hidden] = HIDDEN

    def set(self, pos: np.ndarray) -> None:
        """Mark positions ``pos`` seen (touched)."""
        self.stamp[pos[self.stamp[pos] == 0]] = -1

    def mask(self) -> np.ndarray:
        """Boolean mask over the positions: seen (or hidden)."""
        return self.stamp != 0

    def first_sightings(self, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Mark positions ``pos`` (of batch rows ``rows``) seen; return the mask of rows
        that are the first of their key in this run (later ones are duplicates)."""
        stamp = self.stamp
        earlier = stamp[pos] != 0
        # Values only need to be unique within the batch: every position of the batch
        # is overwritten here, and rows whose key was stamped before are excluded.
        mine = (rows + 1).astype(np.int32)
        stamp[pos[::-1]] = mine[::-1]  # the last write wins: the batch's first row
        return (stamp[pos] == mine) & ~earlier


class Scratch:
    """Working arrays kept from batch to batch. Fresh ones each batch cost a page fault
    per 4 kB (glibc hands memory freed at the top of its heap back to the kernel): 60k
    faults and ~0.1 s per 10M rows."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype: type) -> np.ndarray:
        """An uninitialised array of ``n`` items named ``name`` (valid until the next
        call with that name)."""
        a = self._arrays.get(name)
        if a is None or len(a) < n or a.dtype != dtype:
            a = self._arrays[name] = np.empty(n, dtype=dtype)
        return a[:n]

    def arange(self, n: int) -> np.ndarray:
        """``0 .. n - 1`` (int64), read-only."""
        a = self._arrays.get("arange")
        if a is None or len(a) < n:
            a = self._arrays["arange"] = np.arange(n, dtype=np.int64)
            a.flags.writeable = False
        return a[:n]

"""The planner's two lookup engines: where each row of a batch stands against the
acknowledged state and the run so far.

:class:`NumpyLookup` is the reference: numpy lookups in the probing table, and stamps per
state position for the keys seen in the run. :class:`CompiledLookup` computes the same
with the kernels of ``conn-speedups``: one pass per row for the lookup, the seen-bits and
the stored hashes (shared by two threads), and one to sort the rows. The planner picks
one engine per run (:func:`choose`); the state tests run every plan through both.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import NamedTuple

import numpy as np

from conn.state.planner import kernels
from conn.state.planner.marks import Scratch, SeenBits, SeenStamps
from conn.state.planner.sorted_state import LayeredState, SortedState


class Lookup(NamedTuple):
    """What a lookup tells the planner about one batch. Rows are batch row numbers."""

    #: Rows whose key is in the state with another payload hash (on a full resync:
    #: every row whose key is in the state).
    updates: np.ndarray
    #: How many rows have their key in the state with the same payload hash.
    unchanged: int
    #: Rows whose key is not in the state (inserts, or duplicates among new keys).
    absent: np.ndarray
    #: Rows whose key in the state an earlier row of the run claimed (duplicates).
    seen_before: np.ndarray
    #: The batch's payload hashes (every row).
    hashes: np.ndarray
    #: The stored payload hash of each row of ``updates``.
    previous: np.ndarray


class NumpyLookup:
    """Lookups with numpy (no ``conn-speedups``); the run's marks are
    :class:`~conn.state.planner.marks.SeenStamps`."""

    def __init__(self, state: SortedState | LayeredState, *, full_resync: bool) -> None:
        self.state = state
        self.full_resync = full_resync
        self.marks = SeenStamps(len(state), state.hidden)

    def __call__(self, rows: np.ndarray, q: np.ndarray,
                 payload_hashes: Callable[[], np.ndarray]) -> Lookup:
        """Look up the key ids ``q`` of batch rows ``rows`` and claim them for this run;
        ``payload_hashes()`` gives the batch's payload hashes (computed meanwhile)."""
        st = self.state
        pos = st.find(q)
        known = pos >= 0
        first = self.marks.first_sightings(rows[known], pos[known])
        stored = st.hashes_at(pos[known][first])
        k_rows = rows[known]
        ok_rows = k_rows[first]
        hashes = payload_hashes()
        changed = (np.ones(len(ok_rows), dtype=bool) if self.full_resync
                   else stored != hashes[ok_rows])
        updates = ok_rows[changed]
        return Lookup(updates, int(len(ok_rows) - len(updates)), rows[~known], k_rows[~first],
                      hashes, stored[changed])


class CompiledLookup:
    """The same as :class:`NumpyLookup` with the compiled kernels; the run's marks are
    :class:`~conn.state.planner.marks.SeenBits`. One compiled pass for the lookup,
    seen-bits and stored hashes, one to sort the rows (numpy's eight passes over the batch
    took 0.19 s per 10M rows).

    ``helper``: the planner's hashing thread, which joins the probe once the payload
    hashes are done (the probe is bound by cache misses, and two cores keep twice as many
    in flight); ``None`` probes on the calling thread alone."""

    def __init__(self, state: SortedState | LayeredState, *, full_resync: bool,
                 scratch: Scratch, helper: Executor | None) -> None:
        self.full_resync = full_resync
        self.marks = SeenBits(state)
        self._scratch = scratch
        self._helper = helper

    def __call__(self, rows: np.ndarray, q: np.ndarray,
                 payload_hashes: Callable[[], np.ndarray]) -> Lookup:
        """See :meth:`NumpyLookup.__call__`."""
        n, scratch, marks = len(q), self._scratch, self.marks
        out = (scratch.get("pos", n, np.int64), scratch.get("prev", n, np.uint64),
               scratch.get("flag", n, np.uint8))
        groups, starts = kernels.split(q, marks.cuts, scratch.get("groups", n, np.int64))
        ranges = iter(range(len(starts) - 1))

        def probe_ranges() -> None:
            for r in ranges:  # shared: each thread takes the next range left
                marks.probe(q, out, groups[starts[r]:starts[r + 1]])

        helper = self._helper.submit(probe_ranges) if self._helper is not None else None
        try:
            probe_ranges()
        finally:
            error = helper.exception() if helper is not None else None  # shares `out`
        if error is not None:
            raise error
        _, prev, flag = out
        hashes = payload_hashes()
        rows_out = [scratch.get(f"rows{i}", n, np.int64) for i in range(3)]
        nu, unchanged, na, nd = kernels.classify(
            flag, prev, hashes if n == len(hashes) else hashes[rows], self.full_resync,
            rows_out)
        # Copies (they are few): the scratch arrays are the next batch's.
        updates, absent, seen_before = (rows[r[:k]] for r, k in zip(rows_out, (nu, na, nd),
                                                                    strict=True))
        return Lookup(updates, unchanged, absent, seen_before, hashes,
                      prev[rows_out[0][:nu]])


def choose(state: SortedState | LayeredState, *, full_resync: bool, scratch: Scratch,
           helper: Executor | None) -> NumpyLookup | CompiledLookup:
    """The engine for a run: compiled when ``conn-speedups`` is there (the probe needs no
    check against DuckDB), else numpy."""
    if kernels.available():
        return CompiledLookup(state, full_resync=full_resync, scratch=scratch, helper=helper)
    return NumpyLookup(state, full_resync=full_resync)

"""The change planner, shared by every backend.

At the start of a run the backend hands over the acknowledged state of the opened
partitions, sorted by key id: each key's id and payload hash (16 bytes per key; the key
strings and match values stay in the database), with a probing table over the ids (see
:class:`SortedState`). Each batch is hashed (the compiled kernels of ``conn-speedups``,
else DuckDB) and looked up (the compiled probe on two threads, else numpy); no Python
loop per row. Keys seen this run are marks over the state positions plus a hash index of
new keys, so duplicates are caught across batches. Only deletions and commits go back to
the backend.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from conn.errors import StateError
from conn.state import typed_text
from conn.state.contracts import BatchPlan, Deletions, SyncState
from conn.state.planner import kernels, row_hashes
from conn.state.planner.new_keys import NewKeyIndex

REASON_NULL = "null primary key"
#: The key id under which rejections of rows without a primary key are stored.
NULL_KEY_ID = 0
REASON_DUPLICATE = "duplicate primary key {key!r} in this run (the first row is kept)"


#: What the compiled probe writes per row: position (int64), stored hash (uint64) and
#: flag (uint8: 0 absent, 1 first sighting in the run, 2 duplicate).
ProbeOut = tuple[np.ndarray, np.ndarray, np.ndarray]


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
    ``max(home slot, previous position + 1)``: one ``np.maximum.accumulate`` builds the
    table in O(n) with sequential writes (no rehashing, no sort). A lookup probes from the
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
        bits = self._bits(n)
        self.shift = np.uint64(64 - bits)
        idx_type = np.int32 if n < 2**31 - 1 else np.int64
        if n:
            # In place, with as few fresh arrays as possible: first-touch page faults of
            # new memory cost more than the arithmetic here (0.9 -> 0.45 s at 10M keys).
            # Home slots are < 2**40, so the uint64 shift result can be read as int64.
            pos = (self.kids >> self.shift).view(np.int64)
            i = np.arange(n, dtype=idx_type)
            pos -= i
            np.maximum.accumulate(pos, out=pos)
            pos += i
            # Probing never wraps: the table extends past the last position, plus one
            # empty slot that ends every probe.
            # Entries hold position + 1 so that a zeroed (lazily allocated) table is empty.
            # A query's home slot can be any value below 2**bits, past the last stored
            # position: the table covers every home slot plus the trailing empty one.
            size = max(int(pos[-1]) + 2, (1 << bits) + 1)
            self.table = np.zeros(size, dtype=idx_type)
            i += 1
            self.table[pos] = i
            del pos, i
        else:
            self.table = np.zeros(1, dtype=idx_type)

    def _set_pairs(self, pairs: np.ndarray) -> None:
        # Id and hash side by side: a lookup that finds its id has the stored hash in
        # the same cache line (the compiled probe is bound by cache misses).
        self.pairs = pairs
        self.kids, self.hashes = pairs[0::2], pairs[1::2]

    @staticmethod
    def _bits(n: int) -> int:
        return max(1, min(40, n.bit_length() + 1))

    @classmethod
    def from_parts(cls, pairs: np.ndarray, table: np.ndarray) -> SortedState | None:
        """A state over already-built parts (e.g. memory-mapped from a cache written by
        :meth:`parts`); ``None`` if they do not fit together (the caller rebuilds)."""
        n = len(pairs) // 2
        bits = cls._bits(n)
        idx_type = np.int32 if n < 2**31 - 1 else np.int64
        if (pairs.dtype != np.uint64 or table.dtype != idx_type or pairs.ndim != 1
                or table.ndim != 1 or len(pairs) % 2 or len(table) < (1 << bits) + 1
                or (not n and len(table) != 1)):
            return None
        self = cls.__new__(cls)
        self._set_pairs(pairs)
        self.table = table
        self.shift = np.uint64(64 - bits)
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


class Storage(abc.ABC):
    """What a backend stores for one sync; the planner does the rest."""

    @abc.abstractmethod
    def load(self, partitions: frozenset[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Acknowledged ``(kids, hashes)`` of the partitions, sorted by kid if cheap."""

    @abc.abstractmethod
    def commit(self, run_id: str, rows: pa.Table, rejected: pa.Table, *,
               deletes: bool, match_type: str | None = None) -> None:
        """In one transaction: record ``rows`` (kid, key, hash, match_value as text,
        partition) as acknowledged (or as deleted when ``deletes``), with ``match_type``,
        the type token of their match values (:mod:`conn.state.typed_text`); store
        ``rejected`` (kid, key, partition, reason) as this run's rejections, replacing
        earlier rejections of every key in either table (a key rejected again keeps the
        time of its first rejection and counts the attempts); add the counts to the
        run's progress."""

    @abc.abstractmethod
    def lookup(self, kids: np.ndarray, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stored records of ``kids``, in batches with the columns ``key``,
        ``match_value`` (text), ``match_type`` (its type token, null when stored without
        one) and ``hash``."""

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

    def load_sorted(self, partitions: frozenset[int] | None) -> SortedState | LayeredState:
        """The acknowledged state as a :class:`SortedState`; a backend may serve it from
        a cache instead of :meth:`load` and a rebuild (possibly a :class:`LayeredState`)."""
        return SortedState(*self.load(partitions))

    def finish(self) -> None:  # noqa: B027 - optional
        """End of the run (success or not): compact, release resources."""


class _Scratch:
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


#: What a lookup tells the planner about a batch: update rows, the number unchanged,
#: rows absent from the state, rows whose key was seen before (all as batch row
#: numbers), the batch's payload hashes and the stored hashes of the update rows.
_Lookup = tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


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
        self._hasher: ThreadPoolExecutor | None = None
        self.state: SortedState | LayeredState = storage.load_sorted(partitions)
        self._marks: SeenBits | SeenStamps = (
            SeenBits(self.state) if kernels.can_probe()
            else SeenStamps(len(self.state), self.state.hidden))
        self.new = NewKeyIndex()
        self._complete = False
        self._null_keys_rejected = False
        self._scratch = _Scratch()

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
                "conn.state.planner.row_hashes.partition_of_keys() before planning")

    @property
    def seen(self) -> np.ndarray:
        """Boolean mask over the state's keys: seen in this run."""
        return self._marks.mask()

    # --- SyncState ----------------------------------------------------------------------

    def plan(self, keys: pa.Array, batch: pa.RecordBatch) -> BatchPlan:
        if len(keys) != batch.num_rows:
            raise ValueError(f"{len(keys)} keys for a batch of {batch.num_rows} rows")
        if not len(self.state):
            # Nothing to look up (a first sync): one DuckDB pass is cheapest.
            kids, hashes = row_hashes.hash_batch(self._con, keys, batch)
            return self._plan(keys, kids, lambda: hashes)
        # The lookups need only the key ids: the payload hashes are computed on another
        # thread meanwhile (the kernels, numpy and DuckDB all release the GIL), which
        # then joins in the probe (see _compiled_lookup).
        if self._hasher is None:
            self._hasher = ThreadPoolExecutor(1, thread_name_prefix="conn-hash")
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
        marks = self._marks
        updates, unchanged, absent, known_dups, hashes, previous = (
            self._compiled_lookup(marks, rows, q, payload_hashes)
            if isinstance(marks, SeenBits) else
            self._numpy_lookup(marks, rows, q, payload_hashes))
        _, fresh = self.new.add(kids[absent])
        inserts = absent[fresh]
        dups = np.concatenate([known_dups, absent[~fresh]])
        if dups.size:
            dups.sort()
            for i, key in zip(dups.tolist(), keys.take(pa.array(dups)).to_pylist(),
                              strict=True):
                rejected.append((i, REASON_DUPLICATE.format(key=key)))
            rejected.sort()
        return BatchPlan(inserts=pa.array(inserts, pa.int64()),
                         updates=pa.array(updates, pa.int64()),
                         unchanged=unchanged,
                         hashes=pa.array(hashes, pa.uint64()),
                         rejected=rejected,
                         previous=pa.array(previous, pa.uint64()))

    def _compiled_lookup(self, marks: SeenBits, rows: np.ndarray, q: np.ndarray,
                         payload_hashes: Callable[[], np.ndarray]) -> _Lookup:
        """One compiled pass for the lookup, seen-bits and stored hashes, one to sort
        the rows (numpy's eight passes over the batch took 0.19 s per 10M rows)."""
        n, scratch = len(q), self._scratch
        out = (scratch.get("pos", n, np.int64), scratch.get("prev", n, np.uint64),
               scratch.get("flag", n, np.uint8))
        groups, starts = kernels.split(q, marks.cuts, scratch.get("groups", n, np.int64))
        ranges = iter(range(len(starts) - 1))

        def probe_ranges() -> None:
            for r in ranges:  # shared: each thread takes the next range left
                marks.probe(q, out, groups[starts[r]:starts[r + 1]])

        # The hashing thread joins in once the payload hashes are done: the probe is
        # bound by cache misses, and two cores keep twice as many in flight.
        helper = self._hasher.submit(probe_ranges) if self._hasher is not None else None
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
        updates, absent, known_dups = (rows[r[:k]] for r, k in zip(rows_out, (nu, na, nd),
                                                                   strict=True))
        return updates, unchanged, absent, known_dups, hashes, prev[rows_out[0][:nu]]

    def _numpy_lookup(self, marks: SeenStamps, rows: np.ndarray, q: np.ndarray,
                      payload_hashes: Callable[[], np.ndarray]) -> _Lookup:
        """The same as :meth:`_compiled_lookup` with numpy (no ``conn-speedups``)."""
        st = self.state
        pos = st.find(q)
        known = pos >= 0
        first = marks.first_sightings(rows[known], pos[known])
        stored = st.hashes_at(pos[known][first])
        k_rows = rows[known]
        ok_rows = k_rows[first]
        hashes = payload_hashes()
        changed = (np.ones(len(ok_rows), dtype=bool) if self.full_resync
                   else stored != hashes[ok_rows])
        updates = ok_rows[changed]
        return (updates, int(len(ok_rows) - len(updates)), rows[~known], k_rows[~first],
                hashes, stored[changed])

    def touch(self, keys: pa.Array) -> None:
        if not len(keys):
            return
        kids = row_hashes.key_ids(self._con, keys)
        if keys.null_count:
            kids = kids[~np.asarray(keys.is_null().to_numpy(zero_copy_only=False), dtype=bool)]
        pos = self.state.find(kids)
        self._marks.set(pos[pos >= 0])
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
                        rejected: list[tuple[int, str]]) -> pa.Table:
        idx = np.array([i for i, _ in rejected], dtype=np.int64)
        t = self._rows_table(keys, kids, idx, None, None).select(["kid", "key", "partition"])
        return t.append_column("reason", pa.array([r for _, r in rejected], pa.string()))

    def _commit(self, keys: pa.Array, hashes: pa.Array | None, match_values: pa.Array | None,
                acknowledged: pa.Array, rejected: list[tuple[int, str]], deletes: bool) -> None:
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
        rej = self._rejected_table(keys, kids, rejected)
        self.storage.commit(self.run_id, rows, rej, deletes=deletes, match_type=match_type)

    def commit(self, keys: pa.Array, hashes: pa.Array, match_values: pa.Array,
               acknowledged: pa.Array, rejected: list[tuple[int, str]]) -> None:
        self._commit(keys, hashes, match_values, acknowledged, rejected, deletes=False)

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
            self._marks = SeenStamps(0, np.empty(0, np.int64))
            self.storage.finish()
        finally:
            if self._hasher is not None:
                self._hasher.shutdown(wait=True)
            self._hash_con.close()
            self._commit_con.close()
            self._con.close()

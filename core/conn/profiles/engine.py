"""One build of a profile set, in memory: identifier entries in, profiles out.

Input: the entries (``rkey``: a record's key, ``ident``: ``type \\x1f value``), every
record read this build; and what the previous build stored (each record's profile and
island, and its entries). Output: each record's profile id and island, the merges and
splits, and the junk values found.

Encoding is Arrow's dictionary encoding (hashing, no sort); the graph work is
:mod:`conn.profiles.stitch`. An incremental build re-stitches only the islands (components
without limits) that hold a new or vanished record's identifiers; the others keep their
profiles untouched, which gives the same profiles as a full build (docs/profiles.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from conn.profiles.stitch import StitchRules, drop_junk, stitch_islands

SEP = "\x1f"


@dataclass(frozen=True)
class Rules:
    """Type names in priority order, rounds of type names, limits and junk thresholds
    by type name, and declared junk identifiers (``type \\x1f value``)."""

    types: tuple[str, ...]
    rounds: tuple[tuple[str, ...], ...]
    limits: dict[str, int] = field(default_factory=dict)
    max_records: dict[str, int] = field(default_factory=dict)
    junk: frozenset[str] = frozenset()


@dataclass
class Previous:
    """What the last build stored: ``records`` (rkey uint64, profile string, island
    int64), ``entries`` (rkey, ident) and ``junk`` (ident, records). Empty tables for a
    first build. Without ``junk`` a build re-stitches everything."""

    records: pa.Table
    entries: pa.Table
    junk: pa.Table | None = None


@dataclass
class Outcome:
    """A build's result: ``records`` (rkey, profile, island) for every record,
    ``changes`` (kind, old_id, new_id, cause) for merges and splits, ``junk`` (ident,
    records) and how many records were re-stitched."""

    records: pa.Table
    changes: pa.Table
    junk: pa.Table
    restitched: int


RECORDS = pa.schema([("rkey", pa.uint64()), ("profile", pa.string()), ("island", pa.int64())])
ENTRIES = pa.schema([("rkey", pa.uint64()), ("ident", pa.string())])
CHANGES = pa.schema([("kind", pa.string()), ("old_id", pa.string()), ("new_id", pa.string()),
                     ("cause", pa.string())])


def empty_previous() -> Previous:
    """The state before a first build."""
    return Previous(RECORDS.empty_table(), ENTRIES.empty_table())


def _encode_ints(keys: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """Dense codes of integer ``keys`` (in sorted order of the keys) and the position of
    one occurrence of each code."""
    order, starts = _sorted_runs(keys)
    # int32 codes while they fit: half the memory of every array indexed by them.
    dtype = np.int32 if len(keys) < 2**31 - 1 else np.int64
    codes = np.empty(len(keys), dtype)
    codes[order] = np.cumsum(starts, dtype=dtype) - 1
    return codes, order[starts]


def _in_runs(keys: NDArray[Any]) -> bool:
    """Whether ``keys`` are mostly in order (few descents): then sorting them and
    searching sorted tables with them is fast. Counting costs a hundredth of a sort."""
    n = len(keys)
    return n < 2 or int(np.count_nonzero(keys[1:] < keys[:-1])) < n // 64


def _sorted_runs(keys: NDArray[Any]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """The positions of ``keys`` in sorted order, and where each run of equal keys
    starts in it.

    Keys mostly in order already sort fastest with timsort (an argsort). Others (hashes)
    are not argsorted, which numpy does without SIMD here: each key's high bits and its
    position are packed into one word and the words sorted (numpy's vectorised sort, two
    to three times faster). Equal high bits with different keys (rare: a few runs in
    millions) are put in key order afterwards, run by run, in one lexsort."""
    n = len(keys)
    if _in_runs(keys):
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        starts = np.ones(n, bool)
        np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
        return order, starts
    words = keys.view(np.uint64) if keys.dtype.itemsize == 8 else keys.astype(np.uint64)
    if keys.dtype.kind == "i":
        words = words ^ np.uint64(1 << 63)  # signed order as unsigned
    bits = np.uint64(max(1, (n - 1).bit_length()))
    # In place where numpy allows: a first build's peak memory is here.
    packed = words >> bits
    packed <<= bits
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & ((np.uint64(1) << bits) - np.uint64(1))).view(np.int64)
    packed >>= bits
    high = packed
    full = words[order]
    same_high = np.zeros(n, bool)
    np.equal(high[1:], high[:-1], out=same_high[1:])
    del high
    differ = np.ones(n, bool)
    np.not_equal(full[1:], full[:-1], out=differ[1:])
    mixed = same_high & differ  # a key change inside a run of equal high bits
    if mixed.any():
        # Only the few runs holding a change are read: each from its start (the last
        # position before it without the same high bits) to the next run's start.
        run_starts = np.flatnonzero(~same_high)
        first = np.unique(np.searchsorted(run_starts, np.flatnonzero(mixed), "right") - 1)
        ends = np.append(run_starts, n)[first + 1]
        lengths = ends - run_starts[first]
        at = np.repeat(run_starts[first] - np.cumsum(lengths) + lengths, lengths) + \
            np.arange(int(lengths.sum()))
        run = np.repeat(np.arange(len(first)), lengths)
        # Sorting by (run, key) keeps every run in its own positions.
        perm = at[np.lexsort((full[at], run))]
        order[at], full[at] = order[perm], full[perm]
        np.not_equal(full[1:], full[:-1], out=differ[1:])
    return order, differ


def _encode(arr: pa.ChunkedArray | pa.Array) -> tuple[NDArray[Any], pa.Array]:
    """Dense codes of the integers ``arr`` (one sort) and the distinct values they
    index."""
    arr = _flat(arr)
    codes, first = _encode_ints(arr.to_numpy(zero_copy_only=False))
    return codes, arr.take(pa.array(first))


@dataclass
class _Idents:
    """Encoded identifiers: ``codes`` (one per entry), ``first`` (an entry holding each
    code), ``typ`` (each entry's type code, ``len(types)`` for a type not listed) and
    ``dropped`` (entries whose identifier is in the junk given)."""

    arr: pa.Array
    codes: NDArray[Any]
    first: NDArray[np.int64]
    typ: NDArray[np.int32]
    dropped: NDArray[np.bool_]

    def values(self, codes: NDArray[Any] | None = None) -> pa.Array:
        """The identifiers of ``codes`` (every code by default)."""
        at = self.first if codes is None else self.first[codes]
        return self.arr.take(pa.array(at))


def checked_codes(h: NDArray[np.uint64], g: NDArray[np.uint64]
                  ) -> tuple[NDArray[Any], NDArray[np.int64]] | None:
    """Dense codes of the hashes ``h`` (as :func:`_encode_ints`), or None when a second
    hash ``g`` of the same strings disagrees within a code (a collision of ``h``)."""
    codes, first = _encode_ints(h)
    rep = g[first]
    step = 1 << 22  # compared a slice at a time: no second array of every entry
    if all(np.array_equal(g[i:i + step], rep[codes[i:i + step]])
           for i in range(0, len(g), step)):
        return codes, first
    return None


def _encode_idents(col: pa.ChunkedArray | pa.Array, types: tuple[str, ...],
                   junk: pa.Array) -> _Idents:
    """Encode identifiers (``type \x1f value`` strings) in one DuckDB pass: a 64-bit
    hash of each, encoded as integers (Arrow's dictionary encoding of 10M strings took
    several times longer here), and each one's type. The distinct strings are not
    copied: ``first`` points at one entry per code.

    A second hash of each string, seeded differently (a prefix byte shifts every block
    the hash reads), must agree within every code: two strings sharing the first hash
    but not the second are a collision, and then Arrow's exact dictionary encoding
    answers. A collision of both (about 2^-64 times that of the first, itself about
    10^-6 at 10M identifiers) is the only way two identifiers could share a code."""
    import duckdb

    arr = _flat(col)
    con = duckdb.connect()
    con.register("t", pa.table({"s": arr}))
    # A CASE of prefixes: a third of the time of a list lookup of each string's head.
    case = " ".join(f"WHEN starts_with(s, ${i + 1}) THEN {i}" for i in range(len(types)))
    # One batch: its columns are read as numpy arrays without a copy (a copy of each
    # column of many batches was a first build's peak).
    both = con.sql(
        f"SELECT hash(s) AS h, hash(chr(30) || s) AS g, "
        f"{f'CASE {case} ELSE {len(types)} END' if types else '0'}::INTEGER AS t FROM t",
        params=[t + SEP for t in types] or None).to_arrow_table(
            batch_size=max(1, len(arr))).combine_chunks()
    con.close()
    typ = both.column("t").to_numpy()
    found = checked_codes(both.column("h").to_numpy(), both.column("g").to_numpy())
    del both
    if found is None:
        enc = pc.dictionary_encode(arr)  # a collision: exact, slower
        codes = enc.indices.to_numpy(zero_copy_only=False)
        first = np.empty(len(enc.dictionary), np.int64)
        first[codes] = np.arange(len(codes))
    else:
        codes, first = found
    dropped = (pc.is_in(arr, junk).to_numpy(zero_copy_only=False) if len(junk)
               else np.zeros(len(arr), bool))
    # The hashes' Arrow buffers are free now: given back, they do not add to the peak
    # that stitching reaches next (the pool keeps freed memory otherwise).
    pa.default_memory_pool().release_unused()
    return _Idents(arr, codes, first, typ, dropped)


def _lookup(keys: NDArray[Any], table: NDArray[Any]) -> NDArray[np.int64]:
    """The position of each of ``keys`` in ``table`` (unique keys), -1 where absent."""
    return _Index(table).find(keys)


def _np(col: pa.ChunkedArray | pa.Array) -> NDArray[Any]:
    return col.to_numpy() if isinstance(col, pa.ChunkedArray) else col.to_numpy(
        zero_copy_only=False)


def build(entries: pa.Table, rules: Rules, previous: Previous, *,
          full: bool = False) -> Outcome:
    """Stitch ``entries`` under ``rules``, keeping the ids of ``previous``. Entries must
    be distinct (record, identifier) pairs, as :mod:`conn.profiles.edges` reads them."""
    if not full and previous.records.num_rows and previous.junk is not None:
        return build_incremental(entries, rules, previous)
    rec, rkeys = _encode(entries.column("rkey"))
    ids = _encode_idents(entries.column("ident"), rules.types,
                         pa.array(sorted(rules.junk), pa.string()))
    val, typ = ids.codes, ids.typ
    n_rec, n_val = len(rkeys), len(ids.first)
    caps = np.array([rules.max_records.get(t, 0) for t in rules.types] + [0], np.int64)
    keep = drop_junk(rec, typ, val, n_val, caps)
    keep &= ~ids.dropped
    junk = _junk_report(val, keep, ids, n_val)
    # Rebinding drops the unfiltered arrays: nothing else holds them (lower peak).
    rec, typ, val = rec[keep], typ[keep], val[keep]
    del keep

    keys = _np(rkeys)
    prev_idx = _lookup(keys, _np(previous.records.column("rkey")))
    # Every record: without the previous junk a build cannot tell which islands a value
    # turning junk (or ceasing to be) splits or joins.
    subset = np.ones(n_rec, bool)
    return _finish(rkeys, keys, rec, typ, val, n_val, subset, prev_idx, junk, rules,
                   previous)


def _finish(rkeys: pa.Array, keys: NDArray[Any], rec: NDArray[Any], typ: NDArray[np.int32],
            val: NDArray[Any], n_val: int, subset: NDArray[np.bool_],
            prev_idx: NDArray[np.int64], junk: pa.Table, rules: Rules,
            previous: Previous) -> Outcome:
    """Stitch the records of ``subset``, give them ids, merge them into the previous
    records; ``rec``, ``typ``, ``val`` are the entries left after junk."""
    labels, island = _stitch_subset(subset, rec, typ, val, n_val, rules)
    profile = _assign_ids(keys, subset, labels, prev_idx, previous)
    out = _records(rkeys, subset, profile, island, prev_idx, previous)
    changes = _changes(keys, subset, profile, prev_idx, previous)
    return Outcome(out, changes, junk, int(subset.sum()))


def build_incremental(entries: pa.Table, rules: Rules, previous: Previous) -> Outcome:
    """The same result as :func:`build`, reading the previous build instead of encoding
    every entry: the current entries are the previous ones less those of vanished
    records plus those of new records (a record's key is its identifiers), so only the
    touched values are counted, and only the islands holding them are encoded and
    stitched."""
    assert previous.junk is not None
    rk = _np(entries.column("rkey"))
    prev_keys = _np(previous.records.column("rkey"))
    prev_ent_keys = _np(previous.entries.column("rkey"))
    # The previous keys are sorted once; every membership question below reuses it (a
    # sort per question was most of an incremental build's time).
    prev_index = _Index(prev_keys)
    at = prev_index.find(rk)  # each entry's record in the previous build, -1: new
    new_entry = at < 0
    present = np.zeros(len(prev_keys), bool)
    present[at[~new_entry]] = True
    gone_entry = _member(prev_ent_keys, prev_keys[~present])
    # Filtered before being combined: only the selected strings are copied.
    new_ids = _flat(entries.column("ident").filter(pa.array(new_entry)))
    gone_ids = _flat(previous.entries.column("ident").filter(pa.array(gone_entry)))
    touched = pc.unique(pa.concat_arrays([new_ids, gone_ids]))
    prev_hold = pc.is_in(previous.entries.column("ident"), touched).to_numpy(
        zero_copy_only=False)
    # Holders now of each touched value: before, less the vanished, plus the new.
    counts = _count(_flat(previous.entries.column("ident").filter(pa.array(prev_hold))),
                    touched) - _count(gone_ids, touched) + _count(new_ids, touched)
    caps = np.array([rules.max_records.get(t, 0) for t in rules.types] + [0], np.int64)
    cap = caps[_type_codes(touched, rules.types)]
    over = (cap > 0) & (counts > cap)
    # Junk: the previous junk that is not touched, the touched values over their cap.
    old_junk = previous.junk.filter(pc.invert(pc.is_in(previous.junk.column("ident"),
                                                       touched)))
    junk = pa.concat_tables([old_junk.cast(pa.schema([("ident", pa.string()),
                                                      ("records", pa.int64())])),
                             pa.table({"ident": touched.filter(pa.array(over)),
                                       "records": pa.array(counts[over], pa.int64())})])
    # The islands of the previous holders of touched values, and the new records.
    prev_idx_hold = prev_index.find(prev_ent_keys[prev_hold & ~gone_entry])
    islands_prev = _np(previous.records.column("island"))
    hit = np.zeros(int(islands_prev.max()) + 2 if len(islands_prev) else 1, bool)
    hit[islands_prev[prev_idx_hold[prev_idx_hold >= 0]]] = True
    sub_prev = hit[islands_prev] & present
    sub = np.where(new_entry, True, sub_prev[at])  # at = -1 only where new_entry
    sub_entries = entries.filter(pa.array(sub))
    rec, first = _encode_ints(rk[sub])
    keys = rk[sub][first]
    rkeys = pa.array(keys, pa.uint64())
    prev_idx = at[sub][first].astype(np.int64)
    ids = _encode_idents(sub_entries.column("ident"), rules.types, pa.concat_arrays([
        _flat(junk.column("ident")), pa.array(sorted(rules.junk), pa.string())]))
    keep = ~ids.dropped
    out = _finish(rkeys, keys, rec[keep], ids.typ[keep], ids.codes[keep], len(ids.first),
                  np.ones(len(keys), bool), prev_idx, junk, rules, previous)
    # Records not re-stitched keep what they had; vanished ones leave.
    kept = previous.records.filter(pa.array(~sub_prev & present))
    out.records = pa.concat_tables([kept.cast(RECORDS), out.records])
    return out


class _Index:
    """Positions of keys in a table of unique keys, the table sorted once."""

    #: Above this many keys in no order, a hash lookup beats a binary search, whose
    #: every probe then misses the caches (2M people: 10 s against 1.5 s).
    HASHED = 1 << 16

    def __init__(self, table: NDArray[Any]) -> None:
        self.table = table
        self.order = np.argsort(table, kind="stable")
        self.sorted = table[self.order]

    def find(self, keys: NDArray[Any]) -> NDArray[np.int64]:
        """The position of each of ``keys`` in the table, -1 where absent."""
        if not len(self.sorted):
            return np.full(len(keys), -1, np.int64)
        if len(keys) > self.HASHED and not _in_runs(keys):
            at = pc.index_in(pa.array(keys), value_set=pa.array(self.table))
            return at.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        pos = np.minimum(np.searchsorted(self.sorted, keys), len(self.sorted) - 1)
        hit = self.sorted[pos] == keys
        return np.where(hit, self.order[pos], -1).astype(np.int64)


def _flat(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _member(keys: NDArray[Any], table: NDArray[Any]) -> NDArray[np.bool_]:
    """Whether each of ``keys`` is in ``table`` (duplicates allowed): a sort and a
    binary search."""
    if not len(table) or not len(keys):
        return np.zeros(len(keys), bool)
    s = np.sort(table)
    pos = np.minimum(np.searchsorted(s, keys), len(s) - 1)
    return np.asarray(s[pos] == keys)


def _count(values: pa.Array, of: pa.Array) -> NDArray[np.int64]:
    """How many times each of ``of`` occurs in ``values``."""
    idx = pc.index_in(values, of).to_numpy(zero_copy_only=False)
    idx = idx[~np.isnan(idx)].astype(np.int64) if idx.dtype.kind == "f" else idx
    return np.bincount(idx, minlength=len(of)).astype(np.int64)


def _type_codes(idents: pa.Array, types: tuple[str, ...]) -> NDArray[np.int32]:
    """The type of each identifier (``len(types)`` for a type not listed)."""
    codes = np.full(len(idents), len(types), np.int32)
    for i, t in enumerate(types):
        codes[pc.starts_with(idents, t + SEP).to_numpy(zero_copy_only=False)] = i
    return codes


def _junk_report(val: NDArray[Any], keep: NDArray[np.bool_], ids: _Idents,
                 n_val: int) -> pa.Table:
    dropped = np.unique(val[~keep])
    held = np.bincount(val, minlength=n_val)[dropped]
    return pa.table({"ident": ids.values(dropped), "records": held})


def _stitch_subset(subset: NDArray[np.bool_], rec: NDArray[np.int64],
                   typ: NDArray[np.int32], val: NDArray[np.int64], n_val: int,
                   rules: Rules) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Labels and islands of the records in ``subset`` (-1 elsewhere)."""
    n = int(subset.sum())
    if n == len(subset):
        r, t, v = rec, typ, val  # every record: no renumbered copies
    else:
        local = np.cumsum(subset, dtype=rec.dtype) - 1
        m = subset[rec]
        r, t, v = local[rec[m]], typ[m], val[m]
    codes = {name: i for i, name in enumerate(rules.types)}
    srules = StitchRules(tuple(tuple(codes[x] for x in rnd) for rnd in rules.rounds),
                         {codes[k]: n_ for k, n_ in rules.limits.items()})
    lab, isl = stitch_islands(n, r, t, v, n_val, srules)
    labels = np.full(len(subset), -1, np.int64)
    island = np.full(len(subset), -1, np.int64)
    labels[subset], island[subset] = lab, isl
    return labels, island


def _assign_ids(keys_all: NDArray[Any], subset: NDArray[np.bool_],
                labels: NDArray[np.int64], prev_idx: NDArray[np.int64],
                previous: Previous) -> pa.Array:
    """Profile ids of the re-stitched records' clusters: each old id goes to the new
    cluster holding most of its records (ties: the cluster with the smallest record
    key), and a cluster takes the old id it holds most records of (ties: the smallest
    id); other clusters get an id derived from their smallest record key."""
    every = bool(subset.all())  # a full build: no copies of every record's arrays
    keys = keys_all if every else keys_all[subset]
    lab = labels if every else labels[subset]
    n_lab = int(lab.max()) + 1 if len(lab) else 0
    # The smallest record key of each cluster, without sorting the records by cluster
    # (an unbuffered ufunc.at pass: a twentieth of the sort's time).
    first_key = np.full(n_lab, np.iinfo(np.uint64).max, np.uint64)
    np.minimum.at(first_key, lab, keys.astype(np.uint64, copy=False))
    at = prev_idx if every else prev_idx[subset]
    held = at >= 0
    # Only the old ids of these records: an incremental build reads no other.
    prev_profile = previous.records.column("profile")
    held_names = prev_profile.take(pa.array(at[held])) if held.any() \
        else pa.array([], pa.string())
    old_names, oc = _ranked(_flat(held_names))
    n_old = len(old_names)
    profile = np.full(n_lab, -1, np.int64)  # index into old_names, -1: a fresh id
    if n_old:
        pairs, shared = np.unique(lab[held] * np.int64(n_old) + oc, return_counts=True)
        plab, pold = pairs // n_old, pairs % n_old
        # Each old id: its best cluster (most shared, then smallest first record key).
        best = np.lexsort((first_key[plab], -shared, pold))
        first_of_old = best[_group_starts(pold[best])]
        # Each cluster: the best of the old ids that chose it (most shared, smallest id).
        cl, co, cs = plab[first_of_old], pold[first_of_old], shared[first_of_old]
        pick = np.lexsort((co, -cs, cl))
        pick = pick[_group_starts(cl[pick])]
        profile[cl[pick]] = co[pick]
    if not n_old:  # a first build: every cluster gets a fresh id, no merging of arrays
        return _fresh_ids(first_key, pa.array([], pa.string()), prev_profile).take(
            pa.array(lab))
    names = old_names.take(pa.array(np.maximum(profile, 0)))
    missing = pa.array(profile < 0)
    if pc.any(missing).as_py():
        kept = names.filter(pc.invert(missing)).cast(pa.string())
        fresh = _fresh_ids(first_key[profile < 0], kept, prev_profile)
        names = _fill(names, missing, fresh)
    return names.take(pa.array(lab))


def _ranked(names: pa.Array) -> tuple[pa.Array, NDArray[Any]]:
    """The distinct ``names`` in sorted order, and each name's position among them.
    Ids as conn makes them (``p_`` and 16 hex digits) are read as the numbers they
    spell, whose order is the strings' order: one integer sort. Others (ids from
    elsewhere) are dictionary-encoded and the dictionary sorted, several times slower."""
    words = _id_words(names)
    if words is not None:
        codes, first = _encode_ints(words)
        return names.take(pa.array(first)), codes
    enc = pc.dictionary_encode(names)
    rank = pc.sort_indices(enc.dictionary).to_numpy(zero_copy_only=False)
    place = np.empty(len(rank), np.int64)
    place[rank] = np.arange(len(rank))
    return enc.dictionary.take(pa.array(rank)), place[enc.indices.to_numpy(
        zero_copy_only=False)]


_NIBBLE = np.full(256, 255, np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def _id_words(names: pa.Array) -> NDArray[np.uint64] | None:
    """The number each of ``names`` spells when every one is ``p_`` and 16 lower-case hex
    digits (:func:`_hex_ids`), else None."""
    n = len(names)
    if names.null_count or not n:
        return None if n else np.zeros(0, np.uint64)
    names = names.cast(pa.string())
    offsets = np.frombuffer(names.buffers()[1], np.int32, n + 1, names.offset * 4)
    if not np.all(np.diff(offsets) == 18):
        return None
    chars = np.frombuffer(names.buffers()[2], np.uint8, 18 * n, int(offsets[0]))
    chars = chars.reshape(n, 18)
    if not (np.all(chars[:, 0] == ord("p")) and np.all(chars[:, 1] == ord("_"))):
        return None
    digits = _NIBBLE[chars[:, 2:]]
    if (digits == 255).any():
        return None
    # Digit pairs into bytes, then the 8 bytes of each row read as one big-endian word.
    packed = (digits[:, 0::2] << np.uint8(4)) | digits[:, 1::2]
    return np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)


def _group_starts(sorted_ids: NDArray[np.int64]) -> NDArray[np.bool_]:
    """True where a run of equal values in ``sorted_ids`` starts."""
    out = np.ones(len(sorted_ids), bool)
    out[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return out


def _fresh_ids(first_keys: NDArray[np.uint64], taken: pa.Array,
               old_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``p_`` and 16 hex digits of a hash (splitmix64) of the cluster's smallest record
    key: the same cluster built from scratch gets the same id. Re-hashed with a salt on
    a collision with ``taken`` or any of ``old_ids`` (say a split-off part whose
    smallest record gave the old profile its id)."""
    salt = np.zeros(len(first_keys), np.uint64)
    while True:
        with np.errstate(over="ignore"):
            z = first_keys.astype(np.uint64) + (salt + np.uint64(1)) * \
                np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        ids = _hex_ids(z)
        # The old ids are scanned against the new ones (a small hash set), not hashed.
        reused = old_ids.filter(pc.is_in(old_ids, ids)) if len(old_ids) else taken[:0]
        reused = reused.combine_chunks() if isinstance(reused, pa.ChunkedArray) else reused
        taken_now = pc.is_in(ids, pa.concat_arrays([taken, reused.cast(pa.string())]))
        if salt.any():
            # The keys are distinct and the hash is a bijection of 64-bit words, so ids
            # of one salt never repeat: only differently salted ones can.
            taken_now = pc.or_(taken_now, _duplicated(ids))
        clash = taken_now.to_numpy(zero_copy_only=False)
        if not clash.any():
            return ids
        salt[clash] += np.uint64(1)  # rare (64-bit hashes): loops over clashes, not rows


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def _hex_ids(words: NDArray[np.uint64]) -> pa.Array:
    """``p_`` and the 16 lower-case hex digits of each word, most significant first,
    written straight into an Arrow string buffer (formatting each id as a Python string
    took most of a first build's id assignment)."""
    n = len(words)
    buf = np.empty((n, 18), np.uint8)
    buf[:, 0], buf[:, 1] = ord("p"), ord("_")
    for i in range(16):  # over digit positions, not rows
        buf[:, 2 + i] = _HEX[(words >> np.uint64(60 - 4 * i)) & np.uint64(15)]
    offsets = np.arange(0, 18 * (n + 1), 18, dtype=np.int64)
    ids = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))
    return ids.cast(pa.string())


def _duplicated(arr: pa.Array) -> pa.Array:
    counts = pc.value_counts(arr)
    dup = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return pc.is_in(arr, dup)


def _fill(base: pa.Array, mask: pa.Array, values: pa.Array) -> pa.Array:
    """``base`` with the positions of ``mask`` replaced by ``values`` in order."""
    idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    pos = np.full(len(base), -1, np.int64)
    pos[idx] = np.arange(len(idx))
    return pc.if_else(mask, values.take(pa.array(np.maximum(pos, 0))), base)


def _records(rkeys: pa.Array, subset: NDArray[np.bool_], profile: pa.Array,
             island: NDArray[np.int64], prev_idx: NDArray[np.int64],
             previous: Previous) -> pa.Table:
    sub = pa.array(subset)
    base = int(pc.max(previous.records.column("island")).as_py() or 0) + 1 \
        if previous.records.num_rows else 0
    fresh = pa.table({"rkey": rkeys.filter(sub), "profile": profile,
                      "island": pa.array(island[subset] + base)}, schema=RECORDS)
    if subset.all():
        return fresh
    # Records not re-stitched keep what they had (they are all in the previous build).
    kept = previous.records.take(pa.array(prev_idx[~subset]))
    return pa.concat_tables([kept.cast(RECORDS), fresh])


def _changes(keys_all: NDArray[Any], subset: NDArray[np.bool_], profile: pa.Array,
             prev_idx: NDArray[np.int64], previous: Previous) -> pa.Table:
    """Merges (an old id whose records now sit in another id's profile) and splits (an
    id's records now partly in another, new profile); the cause is the smallest key of
    a new record in the resulting profile, when there is one."""
    if not previous.records.num_rows:
        return CHANGES.empty_table()
    at = prev_idx[subset]
    keys = pa.array(keys_all[subset], pa.uint64())
    old = previous.records.column("profile").take(
        pa.array(np.maximum(at, 0))).combine_chunks()
    moved = pc.and_(pa.array(at >= 0), pc.not_equal(old, profile))
    pairs = pa.table({"old_id": old.filter(moved), "new_id": profile.filter(moved)}
                     ).group_by(["old_id", "new_id"]).aggregate([])
    if not pairs.num_rows:
        return CHANGES.empty_table()
    alive = pc.is_in(pairs.column("old_id"), profile)
    kind = pc.if_else(alive, "split", "merge")
    new = pa.array(at < 0)
    first_new = pa.table({"new_id": profile.filter(new), "k": keys.filter(new)}
                         ).group_by("new_id").aggregate([("k", "min")])
    out = pairs.append_column("kind", kind).join(first_new, "new_id", join_type="left outer")
    cause = pc.if_else(pc.is_valid(out.column("k_min")), pc.binary_join_element_wise(
        "record ", out.column("k_min").cast(pa.string()), ""), pa.scalar(None, pa.string()))
    out = pa.table({"kind": out.column("kind"), "old_id": out.column("old_id"),
                    "new_id": out.column("new_id"), "cause": cause}, schema=CHANGES)
    return out.sort_by([("kind", "ascending"), ("old_id", "ascending"),
                        ("new_id", "ascending")])

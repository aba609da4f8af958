"""Dense integer codes of record keys and identifiers: the encoding a build stitches.

Record keys (64-bit integers) are sorted once (:func:`encode_ints`); identifiers
(``type \\x1f value`` strings) are hashed in one DuckDB pass and the hashes encoded as
integers, a second hash checking the first (:func:`encode_idents`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

SEP = "\x1f"


def encode_ints(keys: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """Dense codes of integer ``keys`` (in sorted order of the keys) and the position of
    one occurrence of each code."""
    order, starts = _sorted_runs(keys)
    # int32 codes while they fit: half the memory of every array indexed by them.
    dtype = np.int32 if len(keys) < 2**31 - 1 else np.int64
    codes = np.empty(len(keys), dtype)
    codes[order] = np.cumsum(starts, dtype=dtype) - 1
    return codes, order[starts]


def in_runs(keys: NDArray[Any]) -> bool:
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
    if in_runs(keys):
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


def encode(arr: pa.ChunkedArray | pa.Array) -> tuple[NDArray[Any], pa.Array]:
    """Dense codes of the integers ``arr`` (one sort) and the distinct values they
    index."""
    arr = flat(arr)
    codes, first = encode_ints(arr.to_numpy(zero_copy_only=False))
    return codes, arr.take(pa.array(first))


@dataclass
class Idents:
    """Encoded identifiers: ``codes`` (one per entry), ``first`` (an entry holding each
    code), ``typ`` (each entry's type code, ``len(types)`` for a type not listed) and
    ``dropped`` (entries whose identifier is in the junk given)."""

    arr: pa.ChunkedArray | pa.Array
    codes: NDArray[Any]
    first: NDArray[np.int64]
    typ: NDArray[np.int32]
    dropped: NDArray[np.bool_]

    def values(self, codes: NDArray[Any] | None = None) -> pa.Array:
        """The identifiers of ``codes`` (every code by default)."""
        at = self.first if codes is None else self.first[codes]
        return flat(self.arr.take(pa.array(at)))


def checked_codes(h: NDArray[np.uint64], g: NDArray[np.uint64]
                  ) -> tuple[NDArray[Any], NDArray[np.int64]] | None:
    """Dense codes of the hashes ``h`` (as :func:`encode_ints`), or None when a second
    hash ``g`` of the same strings disagrees within a code (a collision of ``h``)."""
    codes, first = encode_ints(h)
    rep = g[first]
    step = 1 << 22  # compared a slice at a time: no second array of every entry
    if all(np.array_equal(g[i:i + step], rep[codes[i:i + step]])
           for i in range(0, len(g), step)):
        return codes, first
    return None


def encode_idents(col: pa.ChunkedArray | pa.Array, types: tuple[str, ...],
                   junk: pa.Array) -> Idents:
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

    # DuckDB scans the chunks as they are: combining them copied every identifier (a
    # few hundred MB at 10M entries, held to the end of the build).
    arr = col
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
        enc = pc.dictionary_encode(flat(arr))  # a collision: exact, slower
        codes = enc.indices.to_numpy(zero_copy_only=False)
        first = np.empty(len(enc.dictionary), np.int64)
        first[codes] = np.arange(len(codes))
    else:
        codes, first = found
    dropped = to_numpy(pc.is_in(arr, junk)) if len(junk) else np.zeros(len(arr), bool)
    # The hashes' Arrow buffers are free now: given back, they do not add to the peak
    # that stitching reaches next (the pool keeps freed memory otherwise).
    pa.default_memory_pool().release_unused()
    return Idents(arr, codes, first, typ, dropped)


def to_numpy(col: pa.ChunkedArray | pa.Array) -> NDArray[Any]:
    return col.to_numpy() if isinstance(col, pa.ChunkedArray) else col.to_numpy(
        zero_copy_only=False)


def flat(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col

"""Rows of a table by key, vectorised: a sorted array of 64-bit key hashes searched once
per batch (``numpy.searchsorted``), each hit confirmed on the key text. Built once per
run; looking up a 64k-row batch costs its keys' hashes and a binary search, where
``pyarrow.compute.index_in`` would rebuild a hash table of the whole table per batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _key_ids(keys: pa.Array) -> np.ndarray:
    from conn.duckdb_scan import duckdb_connection
    from conn.state.planner.row_hashes import key_ids

    return key_ids(duckdb_connection(), keys)  # type: ignore[arg-type]


class KeyIndex:
    """The position of each key of ``keys`` (text, unique)."""

    def __init__(self, keys: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        self.keys = keys
        ids = _key_ids(keys) if len(keys) else np.zeros(0, np.uint64)
        self.order = np.argsort(ids, kind="stable")
        self.sorted_ids = ids[self.order]

    def positions(self, keys: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Row of each of ``keys`` (null where there is none)."""
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        if len(self.sorted_ids) == 0 or len(keys) == 0:
            return pa.nulls(len(keys), pa.int64())
        ids = _key_ids(keys)
        at = np.searchsorted(self.sorted_ids, ids).clip(0, len(self.sorted_ids) - 1)
        rows = self.order[at]
        hit = self.sorted_ids[at] == ids
        # A hash match is confirmed on the key text (two keys may share a hash).
        same = pc.equal(self.keys.take(pa.array(rows)), keys)
        hit &= np.asarray(same.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        return pa.array(rows, pa.int64(), mask=~hit)

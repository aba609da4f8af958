"""The vectorised key index and hashing helpers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from conn.state.planner import row_hashes
from conn.state.planner.new_keys import NewKeyIndex


def test_key_index_add_and_find():
    ix = NewKeyIndex()
    kids = np.array([5, 9, 5, 1, 9, 7], dtype=np.uint64)
    pos, fresh = ix.add(kids)
    assert fresh.tolist() == [True, True, False, True, False, True]
    assert pos.tolist() == [0, 1, 0, 2, 1, 3]
    assert ix.find(np.array([7, 1, 2, 5], dtype=np.uint64)).tolist() == [3, 2, -1, 0]
    rng = np.random.default_rng(0)
    many = np.unique(rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64))
    for lo in range(0, len(many), 7_000):  # grows and rehashes
        ix.add(many[lo:lo + 7_000])
    assert (ix.kids[ix.find(many)] == many).all()
    _, fresh = ix.add(many[:10])
    assert not fresh.any()


def test_payload_hash_is_deterministic_and_schema_sensitive():
    keys = pa.array(["a", "b"])
    b = pa.record_batch({"x": [1, 2], "y": ["p", "q"]})
    with row_hashes.connect() as c1, row_hashes.connect() as c2:
        k1, h1 = row_hashes.hash_batch(c1, keys, b)
        k2, h2 = row_hashes.hash_batch(c2, keys, b)
        assert (k1 == k2).all() and (h1 == h2).all()
        _, h3 = row_hashes.hash_batch(c1, keys, b.rename_columns(["x", "z"]))
        assert (h3 != h1).all()
        _, h4 = row_hashes.hash_batch(c1, keys, pa.record_batch({"x": [1, 3], "y": ["p", "q"]}))
        assert h4[0] == h1[0] and h4[1] != h1[1]
        assert row_hashes.canary(c1) == row_hashes.canary(c2)
    big = pa.array([str(i) for i in range(40_000)])  # chunked for parallel hashing
    with row_hashes.connect() as c:
        k, _ = row_hashes.hash_batch(c, big, pa.record_batch({"v": list(range(40_000))}))
        assert len(k) == 40_000 and (k == row_hashes.key_ids(c, big)).all()

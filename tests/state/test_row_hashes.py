"""Key ids and payload hashes: deterministic, sensitive to the payload's schema, the same
in one pass and in two."""

from __future__ import annotations

import pyarrow as pa
from conn.state.planner import row_hashes


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

"""The compiled kernels' guards, run with the kernels on (outside tests/state, whose
tests all run on both paths): a type without a kernel, or a kernel that disagrees with
DuckDB, is hashed by DuckDB."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest
from conn.state import accel, hashing

from tests.conftest import unavailable

try:
    import conn_speedups
except ImportError:
    unavailable("conn-speedups is not installed (make dev builds it)")


@pytest.fixture(autouse=True)
def kernels_on(monkeypatch):
    monkeypatch.setenv("CONN_SPEEDUPS", "1")
    accel.reset()
    yield
    accel.reset()


def test_unsupported_type_left_to_duckdb():
    b = pa.record_batch({"d": pa.array([1, 2], pa.decimal128(10, 2))})
    with hashing.connect() as con:
        assert accel.payload_hashes(con, b, "fp") is None
        assert len(hashing.payload_hashes(con, b)) == 2  # DuckDB hashed it


def test_a_kernel_that_disagrees_with_duckdb_is_not_used(monkeypatch, caplog):
    real = conn_speedups.hash_fixed

    def off_by_one(out, mix, n, offset, validity, values, kind):
        real(out, mix, n, offset, validity, values, kind)
        if kind == "d":
            out[:n] += np.uint64(1)

    monkeypatch.setattr(conn_speedups, "hash_fixed", off_by_one)
    accel.reset()
    b = pa.record_batch({"x": pa.array([1.5, 2.5]), "s": pa.array(["a", "b"])})
    with caplog.at_level(logging.WARNING), hashing.connect() as con:
        assert accel.enabled(con)
        assert accel.payload_hashes(con, b, "fp") is None  # the double column
        assert accel.key_ids(con, pa.array(["a"])) is not None  # strings still fast
        t = pa.table({"c0": b.column(0), "c1": b.column(1)})  # noqa: F841
        ref = con.sql(f"SELECT {hashing._payload_sql(b)} FROM t").fetchall()
        assert hashing.payload_hashes(con, b).tolist() == [r[0] for r in ref]
    assert "double hash differs from DuckDB" in caplog.text



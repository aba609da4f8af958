"""The compiled kernels' guards, run with the kernels on (outside tests/state, whose
tests all run on both paths): a type without a kernel, or a kernel that disagrees with
DuckDB, is hashed by DuckDB."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest
from conn.state.planner import kernels, row_hashes

from tests.conftest import unavailable

try:
    import conn_speedups
except ImportError:
    unavailable("conn-speedups is not installed (make dev builds it)")


@pytest.fixture(autouse=True)
def kernels_on(monkeypatch):
    monkeypatch.setenv("CONN_SPEEDUPS", "1")
    kernels.reset()
    yield
    kernels.reset()


def test_unsupported_type_left_to_duckdb():
    b = pa.record_batch({"d": pa.array([1, 2], pa.decimal128(10, 2))})
    with row_hashes.connect() as con:
        assert kernels.payload_hashes(con, b, "fp") is None
        assert len(row_hashes.payload_hashes(con, b)) == 2  # DuckDB hashed it


def test_a_kernel_that_disagrees_with_duckdb_is_not_used(monkeypatch, caplog):
    real = conn_speedups.hash_fixed

    def off_by_one(out, mix, n, offset, validity, values, kind):
        real(out, mix, n, offset, validity, values, kind)
        if kind == "d":
            out[:n] += np.uint64(1)

    monkeypatch.setattr(conn_speedups, "hash_fixed", off_by_one)
    kernels.reset()
    b = pa.record_batch({"x": pa.array([1.5, 2.5]), "s": pa.array(["a", "b"])})
    with caplog.at_level(logging.WARNING), row_hashes.connect() as con:
        assert kernels.enabled(con)
        assert kernels.payload_hashes(con, b, "fp") is None  # the double column
        assert kernels.key_ids(con, pa.array(["a"])) is not None  # strings still fast
        t = pa.table({"c0": b.column(0), "c1": b.column(1)})  # noqa: F841
        ref = con.sql(f"SELECT {row_hashes._payload_sql(b)} FROM t").fetchall()
        assert row_hashes.payload_hashes(con, b).tolist() == [r[0] for r in ref]
    assert "double hash differs from DuckDB" in caplog.text



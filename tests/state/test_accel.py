"""The compiled fast path is used only where it reproduces DuckDB's hashes."""

from __future__ import annotations

import logging

import pyarrow as pa
from conn.state.planner import kernels, row_hashes


def batch() -> pa.RecordBatch:
    return pa.record_batch({
        "email": pa.array(["a@x.io", None, "long-address-for-blocks@example.com"]),
        "n": pa.array([1, -2, None], pa.int64()),
        "at": pa.array([0, 1_700_000_000, None], pa.int64()).cast(pa.timestamp("s")),
        "ok": pa.array([True, None, False]),
    })


def test_hashes_are_duckdbs_on_both_paths():
    b = batch()
    with row_hashes.connect() as con:
        kids, hashes = row_hashes.hash_batch(con, pa.array(["1", "2", None]), b)
        t = pa.table([*list(b.columns), pa.array(["1", "2", None])],  # noqa: F841
                     names=[f"c{i}" for i in range(4)] + ["k"])
        ref = con.sql(f"SELECT hash(k), {row_hashes._payload_sql(b)} FROM t").fetchall()
    assert kids.tolist() == [r[0] for r in ref]
    assert hashes.tolist() == [r[1] for r in ref]


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("CONN_SPEEDUPS", "0")
    kernels.reset()
    with row_hashes.connect() as con:
        assert not kernels.enabled(con)
        assert kernels.key_ids(con, pa.array(["a"])) is None


def test_a_stale_build_of_the_kernels_is_ignored(monkeypatch, caplog):
    """A conn-speedups built for another kernel API (say, not rebuilt after an upgrade)
    must not be called: its kernels could mean something else."""
    import sys
    import types

    from conn import speedups

    stale = types.ModuleType("conn_speedups")
    stale.API_VERSION = speedups.API_VERSION - 1  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "conn_speedups", stale)
    monkeypatch.setenv("CONN_SPEEDUPS", "1")
    kernels.reset()
    with caplog.at_level(logging.WARNING), row_hashes.connect() as con:
        assert speedups.find() is None
        assert not kernels.enabled(con)
        assert len(row_hashes.key_ids(con, pa.array(["a", "b"]))) == 2  # DuckDB did it
    assert "kernel API" in caplog.text
    kernels.reset()

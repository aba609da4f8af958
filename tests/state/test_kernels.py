"""The compiled kernels are used only where they reproduce DuckDB's hashes: a type
without a kernel, a kernel that disagrees with DuckDB, a stale build or ``CONN_SPEEDUPS=0``
leave the work to DuckDB."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest
from conn.state.planner import kernels, row_hashes

from tests.conftest import unavailable


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


@pytest.mark.one_planner_path
def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("CONN_SPEEDUPS", "0")
    kernels.reset()
    with row_hashes.connect() as con:
        assert not kernels.enabled(con)
        assert kernels.key_ids(con, pa.array(["a"])) is None


@pytest.mark.one_planner_path
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


@pytest.fixture
def kernels_on(monkeypatch):
    """The kernels switched on (for tests outside the two-path parametrization)."""
    try:
        import conn_speedups
    except ImportError:
        unavailable("conn-speedups is not installed (make dev builds it)")
    monkeypatch.setenv("CONN_SPEEDUPS", "1")
    kernels.reset()
    yield conn_speedups
    kernels.reset()


@pytest.mark.one_planner_path
def test_unsupported_type_left_to_duckdb(kernels_on):
    b = pa.record_batch({"d": pa.array([1, 2], pa.decimal128(10, 2))})
    with row_hashes.connect() as con:
        assert kernels.payload_hashes(con, b, "fp") is None
        assert len(row_hashes.payload_hashes(con, b)) == 2  # DuckDB hashed it


@pytest.mark.one_planner_path
def test_a_kernel_that_disagrees_with_duckdb_is_not_used(kernels_on, monkeypatch, caplog):
    conn_speedups = kernels_on
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


def test_each_planner_path_plans_with_its_engine(planner_path):
    """The engine is chosen once per run: the compiled one exactly when the kernels are
    there (so the two-path tests really cover both)."""
    from conn.state.backends.memory import MemoryStateStore
    from conn.state.planner.lookup import CompiledLookup, NumpyLookup

    with MemoryStateStore().open_sync("s", "r") as st:
        engine = st._lookup  # type: ignore[attr-defined]
    assert type(engine) is {"compiled": CompiledLookup, "numpy": NumpyLookup}[planner_path]


@pytest.mark.one_planner_path
def test_every_caller_reaches_the_kernels_through_one_module():
    """conn.speedups finds the package; only conn.state.planner.kernels calls it (a reader
    greps one module to find every fast path, and its checks guard each one)."""
    from pathlib import Path

    import conn

    core = Path(conn.__file__).parent
    sources = {p.relative_to(core).as_posix(): p.read_text() for p in core.rglob("*.py")}
    assert {p for p, text in sources.items() if "conn_speedups\")" in text
            or "import conn_speedups" in text} == {"speedups.py"}
    assert {p for p, text in sources.items()
            if "speedups.find(" in text or "from conn import speedups" in text} == {
        "state/planner/kernels.py"}

"""A reader in the process that runs a sync (``conn serve``'s or ``conn ui``'s pages)
reads the sync's DuckDB state while the run holds it, and a run starts while such a
reader is busy: DuckDB alone refuses both within one process."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
from conn.state.backends.duckdb import shared
from conn.state.backends.duckdb.store import DuckDBStateStore


def _reject(st, key: str) -> None:
    st.commit(pa.array([key]), pa.nulls(1, pa.uint64()), pa.nulls(1, pa.string()),
              pa.array([False]), [(0, f"INVALID: {key}")])


def test_another_store_reads_while_a_run_holds_the_file(tmp_path: Path) -> None:
    run, reader = DuckDBStateStore(tmp_path), DuckDBStateStore(tmp_path)
    with run.open_sync("s", "r1") as st:
        _reject(st, "k1")
    with run.open_sync("s", "r2") as st:
        # The run holds the file read-write; a second store of this process reads it.
        assert [r["key"] for r in reader.rejections("s")] == ["k1"]
        assert reader.delivered("s", ["k1"]) == []
        assert reader.bound_target("s") is None  # being run here: checked by the run
        _reject(st, "k2")
    assert sorted(r["key"] for r in reader.rejections("s")) == ["k1", "k2"]


def test_a_run_waits_for_a_reader_of_its_file(tmp_path: Path) -> None:
    run, reader = DuckDBStateStore(tmp_path), DuckDBStateStore(tmp_path)
    with run.open_sync("s", "r1") as st:
        _reject(st, "k1")
    opened = threading.Event()
    with shared.reading(run.sync_path("s")):  # a reader is between its open and close
        def go() -> None:
            with run.open_sync("s", "r2"):
                opened.set()
        t = threading.Thread(target=go)
        t.start()
        assert not opened.wait(0.3)  # waits for the reader instead of failing
        assert [r["key"] for r in reader.rejections("s")] == ["k1"]  # same thread: re-entrant
    t.join(10)
    assert opened.is_set()

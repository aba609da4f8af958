"""What several state test modules share: one whole run of a DuckDB-stored sync over a
snapshot, and the files of its sorted-state cache."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
from conn.state.backends.duckdb.store import DuckDBStateStore


def run_snapshot(store: DuckDBStateStore, rows: dict[str, int]) -> dict[str, list[str]]:
    """One full run over ``rows`` (key -> value), committing every change."""
    keys = pa.array(list(rows), pa.string())
    batch = pa.record_batch({"v": pa.array(list(rows.values()), pa.int64())})
    with store.open_sync("s", uuid.uuid4().hex) as st:
        plan = st.plan(keys, batch)
        idx = pa.concat_arrays([plan.inserts, plan.updates])
        k = keys.take(idx)
        st.commit(k, plan.hashes.take(idx), k, pa.array([True] * len(k)), [])
        deleted: list[str] = []
        for dkeys, _, _ in st.deletions(1000):
            deleted += dkeys.to_pylist()
            st.commit_deletes(dkeys, pa.array([True] * len(dkeys)), [])
    return {"inserts": sorted(keys.take(plan.inserts).to_pylist()),
            "updates": sorted(keys.take(plan.updates).to_pylist()),
            "deletes": sorted(deleted)}


def cache_files(store: DuckDBStateStore) -> list[Path]:
    d = store.sync_path("s").with_name(store.sync_path("s").name + ".sorted")
    return sorted(d.iterdir()) if d.exists() else []

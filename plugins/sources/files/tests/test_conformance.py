"""conn's conformance suite for the ``files`` source (conn.testing.conformance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from conn.testing.conformance import SuiteContext, source_suite
from conn_source_files.source import FilesSource

ROWS = 1_000


def data(ctx: SuiteContext) -> Path:
    """``people.parquet`` (1,000 rows in row groups of 250) and ``big.parquet`` (300,000
    rows, for the memory check), written once per test folder."""
    folder = ctx.tmp_path / "data"
    if not folder.exists():
        folder.mkdir()
        people = pa.table({
            "id": pa.array(range(ROWS), pa.int64()),
            "email": [f"person{i}@example.com" for i in range(ROWS)],
            "name": [None if i % 7 == 0 else f"Zoë 東京 {i}" for i in range(ROWS)],
        })
        pq.write_table(people, folder / "people.parquet", row_group_size=250)
        big = pa.table({"id": pa.array(range(300_000), pa.int64()),
                        "label": pa.array([f"{'x' * 40}{i}" for i in range(300_000)])})
        pq.write_table(big, folder / "big.parquet", row_group_size=20_000)
    return folder


def config(ctx: SuiteContext) -> dict[str, Any]:
    folder = data(ctx)
    return {"streams": {
        "people": {"path": str(folder / "people.parquet"), "primary_key": ["id"]},
        "big": {"path": str(folder / "big.parquet"), "primary_key": ["id"]},
    }}


TestFilesSourceConformance = source_suite(
    FilesSource,
    config=config,
    stream="people",
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(ROWS)],
    bad_config={"streams": {}, "format": "xls"},
    failing_config=lambda ctx: {"path": str(ctx.tmp_path / "missing.parquet"),
                                "primary_key": ["id"]},
    batch_rows=100,
    memory_stream="big",
)

"""The streaming section of the source conformance suite, run against the test kit's
memory source (its change feed): the suite's checks must pass on a source that keeps
the contract of conn.streaming."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from conn.streaming import OPERATION
from conn.testing.conformance import SuiteContext, source_suite
from conn.testing.memory import MemorySource, MemoryStream, add_dataset, append_changes

SCHEMA = pa.schema([("id", pa.int64()), ("email", pa.string())])


def config(ctx: SuiteContext) -> dict[str, Any]:
    if "dataset" not in ctx.extra:
        rows = pa.table({"id": [1, 2, 3], "email": ["a@x.io", "b@x.io", "c@x.io"]},
                        schema=SCHEMA)
        ctx.extra["dataset"] = add_dataset({"people": MemoryStream(rows, ("id",))})
    return {"dataset": ctx.extra["dataset"]}


def changes(ctx: SuiteContext, round_: int) -> int:
    ids = [round_ * 10 + i for i in range(3)]
    batch = pa.RecordBatch.from_pydict({
        "id": pa.array(ids, pa.int64()), "email": [f"p{i}@x.io" for i in ids],
        OPERATION: ["insert", "update", "delete"]})
    append_changes(config(ctx)["dataset"], "people", batch)
    return len(ids)


TestMemorySourceStreaming = source_suite(
    MemorySource, config=config, stream="people", changes=changes,
    # A test kit module, not a plugin's entry point: its imports are not checked.
    skip=["test_entry_module_imports_nothing_heavy"],
)

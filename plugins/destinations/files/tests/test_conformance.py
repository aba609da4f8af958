"""conn's conformance suite for the ``files`` destination (conn.testing.conformance)."""

from __future__ import annotations

import json
from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn_destination_files.destination import FilesDestination

FIELDS = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "name": {"type": ["string", "null"]},
        "ltv": {"type": ["number", "null"]},
    },
}
SAMPLES = [
    {"id": "c-1", "email": "ana@example.com", "name": "Ana Müller", "ltv": 10.5},
    {"id": "c-2", "email": "bo@example.com", "name": "Bo", "ltv": 0.0},
]


def config(ctx: SuiteContext) -> dict[str, Any]:
    return {"path": str(ctx.tmp_path / "out"), "format": "jsonl",
            "objects": {"contacts": {"fields": FIELDS, "identifiers": ["id", "email"]}}}


def read_back(ctx: SuiteContext, dest: FilesDestination, obj: str) -> list[dict[str, Any]]:
    """Replay the JSONL change log: latest row per id, deleted ids removed."""
    log = ctx.tmp_path / "out" / f"{obj}.jsonl"
    current: dict[Any, dict[str, Any]] = {}
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.pop("_op", None) == "delete":
                current.pop(row.get("id"), None)
            else:
                current[row.get("id")] = row
    return list(current.values())


TestFilesDestinationConformance = destination_suite(
    FilesDestination,
    config=config,
    object="contacts",
    sample_records=SAMPLES,
    bad_config={"path": "", "format": "xlsx"},
    failing_config=lambda ctx: {"path": str(_file(ctx) / "out")},
    read_back=read_back,
    max_oversize_rows=150_000,
)


def _file(ctx: SuiteContext) -> Any:
    blocker = ctx.tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    return blocker

"""The run history: one row per finished (or failed) run of a sync, in every backend.

:func:`history_row` is the row a backend stores for a run's report: the counters people
list with ``conn runs`` plus the whole report. SQL backends store it in a ``runs`` table
with :data:`COLUMNS`, in that order (:func:`sql_values`).
"""

from __future__ import annotations

import json
import time
from typing import Any

#: The run-history table's columns, in the order of :func:`sql_values`.
COLUMNS = ("sync", "run_id", "status", "started_at", "seconds", "rows_read", "inserted",
           "updated", "deleted", "unchanged", "rejected", "pending", "recorded_at", "report")


def history_row(sync: str, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
    """The run-history row stored for a report: common counters plus the report."""
    def num(name: str) -> int:
        v = report.get(name)
        return int(v) if isinstance(v, int | float) else 0

    return {"sync": sync, "run_id": run_id, "status": str(report.get("status", "unknown")),
            "started_at": report.get("started_at"), "seconds": report.get("seconds"),
            "rows_read": num("rows_read"), "inserted": num("inserted"),
            "updated": num("updated"), "deleted": num("deleted"),
            "unchanged": num("unchanged"), "rejected": num("rejected"),
            "pending": num("pending"), "recorded_at": time.time(), "report": report}


def sql_values(row: dict[str, Any]) -> list[Any]:
    """A :func:`history_row` as the values of an SQL ``runs`` row (:data:`COLUMNS`): a
    start time that is not a number is stored as NULL, the report as JSON text."""
    started = row["started_at"] if isinstance(row["started_at"], int | float) else None
    values = [row[c] for c in COLUMNS]
    values[COLUMNS.index("started_at")] = started
    values[COLUMNS.index("report")] = json.dumps(row["report"], default=str)
    return values

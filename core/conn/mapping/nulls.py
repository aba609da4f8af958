"""Null handling per field: ``null: send`` (default) or ``null: skip``.

Columnar batches always have every field, so *skip* is a convention that destinations
see: the field of the mapped batch's schema carries the metadata ``conn.null = skip``,
and a null in such a field means "send no value for this field for this record" (do not
clear what the destination holds). With ``send`` a null is sent as null (clears the
value where the API allows). :func:`records` builds request payloads that honour it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

NULL_KEY = b"conn.null"
SKIP = b"skip"


def skip_fields(schema: pa.Schema) -> set[str]:
    """Names of fields whose nulls are to be skipped."""
    return {f.name for f in schema if (f.metadata or {}).get(NULL_KEY) == SKIP}


def records(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The batch as dicts, leaving out null values of ``null: skip`` fields (for one
    request's worth of records, as :meth:`WriteRequest.to_pylist`)."""
    rows = batch.to_pylist()
    skip = skip_fields(batch.schema)
    if not skip:
        return rows
    return [{k: v for k, v in r.items() if not (v is None and k in skip)} for r in rows]

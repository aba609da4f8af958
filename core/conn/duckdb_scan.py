"""Arrow data evaluated by DuckDB: tables laid out for its parallel scan, and SQL
expressions over a whole array (pyarrow only at import; DuckDB is imported when used)."""

from __future__ import annotations

import threading

import pyarrow as pa

#: Rows per Arrow chunk handed to DuckDB: its unit of parallel work.
CHUNK_ROWS = 16_384

_local = threading.local()


def parallel_scan(table: pa.Table) -> pa.Table:
    """``table`` in chunks of :data:`CHUNK_ROWS`, so that DuckDB scans it on every core;
    a single big chunk is read by one thread (SHA-256 of 87,500 e-mails: 28 -> 16 ms on
    2 cores). Small tables are returned as they are."""
    if table.num_rows < 2 * CHUNK_ROWS:
        return table
    return pa.Table.from_batches(table.to_batches(max_chunksize=CHUNK_ROWS))


def duckdb_connection() -> object:
    """A per-thread in-memory DuckDB connection (DuckDB connections are not shared)."""
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect()
        _local.con = con
    return con


def sql_over(array: pa.Array, expression: str) -> pa.Array:
    """Evaluate a DuckDB SQL ``expression`` over column ``v`` holding ``array`` (zero-copy
    scan, multi-threaded); the result keeps the input's row order and length."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return pa.array([], pa.string())
    con = duckdb_connection()
    rel = con.from_arrow(parallel_scan(pa.table({"v": array})))  # type: ignore[attr-defined]
    out = rel.project(f"{expression} AS r").to_arrow_table().column(0)
    return out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)

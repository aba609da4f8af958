"""SHA-256 for whole Arrow arrays.

pyarrow has no per-row cryptographic hash kernel, so the digest is computed by DuckDB over
the Arrow array (zero-copy scan, multi-threaded): about 0.18 s for 1M e-mail addresses on
the project's 2-core machines, against 0.79 s for a ``hashlib`` loop. One DuckDB
connection per thread is reused.
"""

from __future__ import annotations

import threading

import pyarrow as pa

from conn.duckdb_scan import parallel_scan

_local = threading.local()


def duckdb_connection() -> object:
    """A per-thread in-memory DuckDB connection (DuckDB connections are not shared)."""
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect()
        _local.con = con
    return con


def sql_over(array: pa.Array, expression: str) -> pa.Array:
    """Evaluate a DuckDB SQL ``expression`` over column ``v`` holding ``array``; the
    result keeps the input's row order and length."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return pa.array([], pa.string())
    con = duckdb_connection()
    rel = con.from_arrow(parallel_scan(pa.table({"v": array})))  # type: ignore[attr-defined]
    out = rel.project(f"{expression} AS r").to_arrow_table().column(0)
    return out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)


def sha256_hex(array: pa.Array) -> pa.Array:
    """Lowercase hex SHA-256 of each UTF-8 string; nulls stay null."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.string())
    return sql_over(array, "sha256(v)")


def md5_hex(array: pa.Array) -> pa.Array:
    """Lowercase hex MD5 of each UTF-8 string (for APIs that ask for it); nulls stay null."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.string())
    return sql_over(array, "md5(v)")

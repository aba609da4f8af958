"""The compiled kernels (the optional ``conn-speedups`` package): every use of them in
conn goes through this module.

``conn-speedups`` reproduces DuckDB's ``hash()`` over Arrow buffers, looks key ids up in
the planner's probing table in one pass per row (2-3x less CPU than DuckDB queries plus
numpy gathers), inserts a batch's new key ids into the run's index, and computes the
SHA-256 of the consent policies. Nothing depends on it: each function here answers
``None`` (or :func:`available` says no) and the caller takes its DuckDB, numpy or
``hashlib``-equivalent path.

A kernel whose result is stored or sent is checked before its first use in a process:
every Arrow type the row hashes cover against DuckDB itself on edge values (empty and
long strings, nulls, -0.0, NaN, each integer width and timestamp unit), SHA-256 against
``hashlib``. A type that disagrees, say after a DuckDB release changed its hash, is left
to DuckDB, so stored hashes never depend on whether the package is installed. The probe,
``split``, ``classify`` and the index only place and compare ids and need no check.

``CONN_SPEEDUPS=0`` switches the kernels off (the state tests run both paths); the
package is found by :mod:`conn.speedups`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from conn import speedups

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

_lock = threading.Lock()
#: The kernels once their row hashes were checked against DuckDB (None: not available).
_checked_module: ModuleType | None = None
_checked = False
#: Arrow types whose kernel matched DuckDB in this process's self-check.
_verified: set[pa.DataType] = set()
#: Whether the SHA-256 kernel matched hashlib (None: not checked in this process).
_sha256_ok: bool | None = None

_FIXED_KIND = {
    pa.int8(): "b", pa.int16(): "h", pa.int32(): "i", pa.int64(): "q",
    pa.uint8(): "B", pa.uint16(): "H", pa.uint32(): "I", pa.uint64(): "Q",
    pa.float32(): "f", pa.float64(): "d", pa.bool_(): "?", pa.date32(): "i",
    **{pa.timestamp(u): "q" for u in ("s", "ms", "us", "ns")},
    # DuckDB reads zoned timestamps as microseconds; only "us" keeps the raw value.
    pa.timestamp("us", tz="UTC"): "q",
}
_BINARY = {pa.string(): False, pa.binary(): False, pa.large_string(): True,
           pa.large_binary(): True}
_SHA256_CHECK = ["", "a", "abc", "x" * 55, "y" * 56, "z" * 64, "w" * 119, "é€😀" * 30,
                 "user@example.com", None]


def available() -> bool:
    """Whether the kernels are installed and switched on. Enough for :func:`probe`,
    :func:`split`, :func:`classify` and :func:`index_add`; the row hashes also need
    :func:`enabled`."""
    return speedups.find() is not None


def reset() -> None:
    """Forget the package and every check: the next use finds and checks the kernels
    again (after ``CONN_SPEEDUPS`` changed, in tests)."""
    global _checked_module, _checked, _sha256_ok
    with _lock:
        speedups.reset()
        _checked_module, _checked, _sha256_ok = None, False, None
        _verified.clear()


def _module() -> ModuleType:
    """The kernels, for the functions only called after :func:`available`."""
    found = speedups.find()
    if found is None:
        raise RuntimeError("conn-speedups is not available")
    return found


# --- row hashes (checked against DuckDB) ----------------------------------------------


def _check_values(t: pa.DataType) -> list:
    if pa.types.is_floating(t):
        big = 1e300 if t == pa.float64() else 3e38
        return [0.0, -0.0, 1.5, -2.25, float("nan"), float("inf"), big, -7.0, None]
    if pa.types.is_boolean(t):
        return [True, False, True, True, False, None, False, True, None]
    ints = [0, 1, -1, 127, -128, 100, -100, 55, None]
    if pa.types.is_unsigned_integer(t):
        return [None if v is None else abs(v) for v in ints]
    return ints


def _check_array(t: pa.DataType) -> pa.Array:
    if t in _BINARY:
        texts = ["", "a", "abcdefg", "abcdefgh", "abcdefghi", "user42@example.com",
                 "é€😀" * 7, "x" * 100, None]
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return pa.array([None if s is None else s.encode() for s in texts], t)
        return pa.array(texts, t)
    vals = _check_values(t)
    if pa.types.is_timestamp(t):
        return pa.array(vals, pa.int64()).cast(t)
    if pa.types.is_date32(t):
        return pa.array(vals, pa.int32()).cast(t)
    return pa.array(vals, t)


def _check_table() -> pa.Table:
    """Edge values of every type the kernels cover, each column with a null."""
    types = [*_FIXED_KIND, *_BINARY]
    return pa.table({f"c{i}": _check_array(t) for i, t in enumerate(types)})


def _self_check(con: duckdb.DuckDBPyConnection) -> None:
    """Keep the types whose kernel matches DuckDB on :func:`_check_table`."""
    global _checked_module, _checked
    found = speedups.find()
    if found is not None:
        t = _check_table()
        names = t.column_names
        sql = ", ".join(f"hash({c})" for c in names)
        expected = con.sql(f"SELECT {sql} FROM t").to_arrow_table()
        for i, col in enumerate(t.columns):
            mine = np.empty(len(col), np.uint64)
            if _hash_column(found, mine, False, _single(col)) and np.array_equal(
                    mine, expected.column(i).to_numpy().astype(np.uint64)):
                _verified.add(col.type)
            else:
                log.warning("conn-speedups: the %s hash differs from DuckDB %s's; "
                            "DuckDB hashes that type", col.type, _duckdb_version())
    _checked_module = found
    _checked = True


def _duckdb_version() -> str:
    import duckdb

    return duckdb.__version__


def _hash_column(kernels: ModuleType, out: np.ndarray, mix: bool, col: pa.Array) -> bool:
    """Hash (or combine) one column into ``out``; False if no kernel covers its type."""
    bufs = col.buffers()
    validity = bufs[0] if col.null_count else None
    if col.type in _BINARY:
        kernels.hash_binary(out, mix, len(col), col.offset, validity, bufs[1], bufs[2],
                            _BINARY[col.type])
        return True
    kind = _FIXED_KIND.get(col.type)
    if kind is None:
        return False
    kernels.hash_fixed(out, mix, len(col), col.offset, validity, bufs[1], kind)
    return True


def enabled(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the kernels are installed, switched on and checked against DuckDB."""
    return _ready(con) is not None


def _ready(con: duckdb.DuckDBPyConnection) -> ModuleType | None:
    if not _checked:
        with _lock:
            if not _checked:
                _self_check(con)
    return _checked_module


def _single(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def key_ids(con: duckdb.DuckDBPyConnection, keys: pa.Array | pa.ChunkedArray
            ) -> np.ndarray | None:
    """DuckDB's ``hash(key)`` per key (string keys), or ``None`` without the fast path."""
    kernels = _ready(con)
    if kernels is None or keys.type not in _verified:
        return None
    out = np.empty(len(keys), np.uint64)
    _hash_column(kernels, out, False, _single(keys))
    return out


def payload_hashes(con: duckdb.DuckDBPyConnection, batch: pa.RecordBatch | pa.Table,
                   fingerprint: str) -> np.ndarray | None:
    """DuckDB's ``hash(c0, ..., cN, fingerprint)`` per row, or ``None`` when the fast path
    is off or a column's type has no verified kernel."""
    kernels = _ready(con)
    if kernels is None or pa.string() not in _verified or not all(
            f.type in _verified for f in batch.schema):
        return None
    out = np.empty(batch.num_rows, np.uint64)
    for i, col in enumerate(batch.columns):
        _hash_column(kernels, out, i > 0, _single(col))
    fp = pa.array([fingerprint], pa.string())
    if batch.num_columns:
        const = np.empty(1, np.uint64)
        _hash_column(kernels, const, False, fp)
        kernels.mix_constant(out, len(out), int(const[0]))
    else:
        _hash_column(kernels, out, False, pa.repeat(fp[0], batch.num_rows))
    return out


# --- the planner's lookups and the new-key index (after available()) ------------------


def probe(table: np.ndarray, pairs: np.ndarray, seen: np.ndarray, hidden: np.ndarray | None,
          shift: int, q: np.ndarray, out: tuple[np.ndarray, np.ndarray, np.ndarray],
          **options: np.ndarray | int | bool | None) -> None:
    """One pass over the rows of ``q`` (see ``conn_speedups.probe`` for ``options``)
    into ``out`` (positions, stored hashes, flags). Only called after :func:`available`."""
    _module().probe(table, table.dtype == np.int64, pairs, seen, hidden, shift, q, *out,
                    **options)


def split(q: np.ndarray, cuts: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of ``q`` grouped (into ``rows``) by the id ranges ``cuts`` divides
    them into, and where each group starts (see ``conn_speedups.split``). Only called
    after :func:`available`."""
    starts = np.empty(len(cuts) + 2, np.int64)
    _module().split(np.ascontiguousarray(q, np.uint64), cuts, rows, starts)
    return rows, starts


def classify(flag: np.ndarray, prev: np.ndarray, hashes: np.ndarray, resync: bool,
             out: list[np.ndarray]) -> tuple[int, int, int, int]:
    """Sort probed rows (see ``conn_speedups.classify``) into ``out``: update, absent and
    duplicate row numbers; returns their counts with the unchanged count second. Only
    called after :func:`available`."""
    return _module().classify(flag, prev, np.ascontiguousarray(hashes, np.uint64), resync,
                              *out)


def index_add(table: np.ndarray, stored: np.ndarray, start: int, kids: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Insert ``kids`` into the open-addressing ``table`` over the ids ``stored`` in one
    pass (see ``conn_speedups.index_add``): ids not yet present are appended to
    ``stored`` from position ``start`` on, in order. Returns each input's position and
    whether this call added it. Only called after :func:`available`."""
    placed = np.empty(len(kids), dtype=np.int64)
    fresh = np.empty(len(kids), dtype=np.uint8)
    _module().index_add(table, table.dtype == np.int64, stored, start, kids, placed, fresh)
    return placed, fresh.view(bool)


# --- SHA-256 (checked against hashlib) --------------------------------------------------


def _sha256(kernels: ModuleType, array: pa.Array) -> pa.Array:
    n = len(array)
    bufs = array.buffers()
    digests = pa.allocate_buffer(64 * n)
    kernels.sha256_hex(digests, n, array.offset, bufs[0] if array.null_count else None,
                       bufs[1], bufs[2], pa.types.is_large_string(array.type))
    offsets = pa.py_buffer(np.arange(0, 64 * n + 1, 64, dtype=np.int32))
    validity = array.is_valid().buffers()[1] if array.null_count else None
    return pa.Array.from_buffers(pa.string(), n, [validity, offsets, digests],
                                 null_count=array.null_count)


def sha256_hex(array: pa.Array) -> pa.Array | None:
    """Lowercase hex SHA-256 of each value of a string array (nulls stay null), or
    ``None`` when the kernel is off, did not reproduce ``hashlib`` in this process, or the
    digests would overflow a string array's 32-bit offsets."""
    global _sha256_ok
    kernels = speedups.find()
    if kernels is None or len(array) >= 2**25:
        return None
    if _sha256_ok is None:
        got = _sha256(kernels, pa.array(_SHA256_CHECK, pa.string())).to_pylist()
        _sha256_ok = got == [None if t is None else hashlib.sha256(t.encode()).hexdigest()
                             for t in _SHA256_CHECK]
        if not _sha256_ok:
            log.warning("conn-speedups: SHA-256 kernel differs from hashlib; using DuckDB")
    return _sha256(kernels, array) if _sha256_ok else None

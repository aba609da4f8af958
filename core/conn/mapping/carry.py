"""Which values a destination's format can carry exactly, checked per row, vectorised.

conn never rewrites a value to make it fit: a row holding a value its destination cannot
carry exactly is rejected with a reason (listed by ``conn rejected``) and the other rows
go on. What a destination can carry is declared by its objects'
:attr:`conn.destination.Capabilities.values`:

``json`` (the default)
    JSON documents and other text formats (every HTTP API, JSONL, CSV, Singer). Not
    carried: NaN and ±Infinity (JSON has no such numbers, RFC 8259 section 6), dates and
    timestamps outside the years 0001-9999 (RFC 3339 has four-digit years), at any depth
    of structs, lists and maps. Binary values are carried as base64 text by the
    destinations that accept them.
``arrow``
    Typed columns that hold any Arrow value (Parquet, database tables written through
    Arrow): nothing is checked.

Each check is a few ``pyarrow.compute`` kernels per column: no Python loop per row.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: ``Capabilities.values`` of destinations writing JSON or other text.
JSON = "json"
#: ``Capabilities.values`` of destinations writing typed Arrow columns.
ARROW = "arrow"
VALUE_FORMATS = (JSON, ARROW)

REASON_NON_FINITE = "{field}: {value} is not a number JSON can carry"
REASON_DATE_RANGE = ("{field}: {kind} outside the years 0001-9999, which RFC 3339 text "
                     "cannot carry")

#: Seconds from the epoch of 0001-01-01T00:00:00 and of 10000-01-01T00:00:00 (exclusive).
_MIN_S = -62135596800
_END_S = 253402300800
_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: Days from the epoch of 0001-01-01 and of 10000-01-01 (exclusive).
_MIN_DAY = -719162
_END_DAY = 2932897


def _mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _outside(values: pa.Array, low: int, end: int) -> pa.Array:
    return pc.or_(pc.less(values, low), pc.greater_equal(values, end))


def temporal_out_of_range(arr: pa.Array) -> np.ndarray | None:
    """Rows of a date or timestamp array outside the years 0001-9999 (None for other
    types). Timestamps are compared as the instants they are (UTC for zoned ones)."""
    t = arr.type
    if pa.types.is_timestamp(t):
        if t.unit == "ns":  # ±292 years around 1970: always inside
            return None
        per = _PER_S[t.unit]
        return _mask(_outside(arr.view(pa.int64()), _MIN_S * per, _END_S * per))
    if pa.types.is_date32(t):
        return _mask(_outside(arr.view(pa.int32()), _MIN_DAY, _END_DAY))
    if pa.types.is_date64(t):
        ms = 86_400_000
        return _mask(_outside(arr.view(pa.int64()), _MIN_DAY * ms, _END_DAY * ms))
    return None


def json_failures(field: str, arr: pa.Array | pa.ChunkedArray
                  ) -> list[tuple[np.ndarray, str]]:
    """Masks (aligned with ``arr``) of rows holding a value JSON text cannot carry exactly,
    each with the reason to reject them; empty when every row can be carried."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    out: dict[str, np.ndarray] = {}
    for mask, reason in _walk(field, arr):
        if mask.any():
            out[reason] = out[reason] | mask if reason in out else mask
    return list(zip(out.values(), out.keys(), strict=True)) if out else []


def _walk(path: str, arr: pa.Array) -> Iterator[tuple[np.ndarray, str]]:
    """(mask over ``arr``'s rows, reason) for each kind of value that JSON cannot carry."""
    t = arr.type
    n = len(arr)
    if n == 0 or arr.null_count == n:
        return
    if pa.types.is_floating(t):
        nan = _mask(pc.is_nan(arr))
        if nan.any():
            yield nan, REASON_NON_FINITE.format(field=path, value="NaN")
        inf = _mask(pc.is_inf(arr))
        if inf.any():
            positive = _mask(pc.greater(arr, 0))
            for mask, value in ((inf & positive, "Infinity"), (inf & ~positive, "-Infinity")):
                if mask.any():
                    yield mask, REASON_NON_FINITE.format(field=path, value=value)
        return
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        bad = temporal_out_of_range(arr)
        if bad is not None and bad.any():
            kind = "a date" if pa.types.is_date(t) else "a timestamp"
            yield bad, REASON_DATE_RANGE.format(field=path, kind=kind)
        return
    if pa.types.is_dictionary(t):
        for mask, reason in _walk(path, arr.dictionary):
            idx = arr.indices.to_numpy(zero_copy_only=False)
            valid = _mask(pc.is_valid(arr))
            rows = np.zeros(n, dtype=bool)
            rows[valid] = mask[idx[valid].astype(np.int64)]
            yield rows, reason
        return
    if pa.types.is_struct(t):
        # flatten() folds the parent's nulls into each child: a null struct hides
        # whatever its children's slots hold.
        for i, child in enumerate(arr.flatten()):
            yield from _walk(f"{path}.{t.field(i).name}", child)
        return
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
            or pa.types.is_map(t):
        values = arr.flatten()
        if not len(values):
            return
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        for mask, reason in _walk(f"{path}[]", values):
            rows = np.zeros(n, dtype=bool)
            rows[parents[mask]] = True
            yield rows, reason


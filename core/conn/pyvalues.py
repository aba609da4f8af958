"""Arrow columns as Python values, for the payloads destinations build record by record.

The same values as pyarrow's ``to_pylist``, where pyarrow is slow: timestamps. pyarrow
makes each datetime of a column with a time zone through ``zoneinfo`` (7.8 µs a value
here, more than the rest of a webhook request's work per record) and even naive ones at
1.7 µs; numpy turns whole microseconds into ``datetime``/``timedelta`` objects in C,
and a UTC instant is the epoch plus its ``timedelta`` (0.25 µs a value). Columns in other
time zones (whose datetimes carry that zone's offsets) and of nanoseconds (which Python's
datetime cannot hold) go through pyarrow as before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Time zone names whose datetimes are UTC instants with offset zero (``+00:00``).
UTC_ZONES = frozenset({"UTC", "utc", "Etc/UTC", "+00:00", "Z"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def pylist(col: pa.Array | pa.ChunkedArray) -> list[Any]:
    """``col.to_pylist()``: equal values, with timestamps made faster (naive, or in
    UTC with ``datetime.timezone.utc`` as their zone; pyarrow gives a ``ZoneInfo``)."""
    t = col.type
    if pa.types.is_timestamp(t) and t.unit != "ns" and (t.tz is None or t.tz in UTC_ZONES):
        try:
            return _timestamps(col, t)
        except (OverflowError, ValueError):  # beyond Python's years 1-9999: as before
            pass
    return col.to_pylist()


#: Ticks of a second per timestamp unit, and the seconds from the epoch to Python's
#: first and past its last datetime (0001-01-01, 10000-01-01).
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000}
_FIRST, _PAST = -62_135_596_800, 253_402_300_800


def _timestamps(col: pa.Array | pa.ChunkedArray, t: pa.TimestampType) -> list[Any]:
    # A view, not a cast: an Arrow call of fixed cost per column of a request's rows.
    ints = col.view(pa.int64()) if isinstance(col, pa.Array) else col.cast(pa.int64())
    ticks = (pc.fill_null(ints, 0) if col.null_count else ints).to_numpy()
    per = _PER_SECOND[t.unit]
    if len(ticks) and (ticks.min() < _FIRST * per or ticks.max() >= _PAST * per):
        raise OverflowError("a timestamp beyond Python's datetime")
    if t.tz is None:
        values = ticks.astype(f"datetime64[{t.unit}]").astype(object).tolist()
    else:
        values = list(map(_EPOCH.__add__, ticks.astype(f"timedelta64[{t.unit}]")
                          .astype(object).tolist()))
    if col.null_count:
        for i in np.flatnonzero(~col.is_valid().to_numpy(zero_copy_only=False)):
            values[i] = None
    return values


def records(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """``batch.to_pylist()``, column by column through :func:`pylist`."""
    names = batch.schema.names
    if not names:
        return [{} for _ in range(batch.num_rows)]
    return [dict(zip(names, row, strict=True))
            for row in zip(*(pylist(c) for c in batch.columns), strict=True)]

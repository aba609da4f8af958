"""Record payloads hold the values pyarrow's ``to_pylist`` gives (docs/plugins.md,
``WriteRequest.to_pylist``): conn builds timestamps its own, faster way, which must give
equal values, of the same kind (naive or aware) and the same ISO text, for every unit,
time zone, null and the edges of Python's datetime range."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest
from conn.pyvalues import pylist, records
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.conftest import examples

ticks = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# Seconds from the epoch to 0001-01-01 and past 9999-12-31, and a little beyond.
FIRST, PAST = -62_135_596_800, 253_402_300_800


@settings(max_examples=examples(200), deadline=None)
@given(unit=st.sampled_from(list(ticks)),
       tz=st.sampled_from([None, "UTC", "+00:00", "Etc/UTC", "Europe/Berlin", "-05:30"]),
       seconds=st.lists(st.one_of(st.none(), st.integers(FIRST, PAST - 1),
                                  st.integers(-10**10, 10**10)), max_size=20),
       fraction=st.integers(0, 10**9 - 1))
def test_timestamps_equal_pyarrows(unit: str, tz: str | None, seconds: list,
                                   fraction: int) -> None:
    per = ticks[unit]
    values = [None if s is None else s * per + fraction % per for s in seconds]
    assume(all(v is None or -2**63 <= v < 2**63 for v in values))  # Arrow's int64 ticks
    col = pa.array(values, pa.timestamp(unit, tz))
    try:
        want = col.to_pylist()
    except (OverflowError, ValueError) as exc:  # pyarrow's own limits: the same error
        with pytest.raises(type(exc)):
            pylist(col)
        return
    got = pylist(col)
    assert got == want
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)
        if isinstance(w, datetime):
            assert type(g) is datetime and g.isoformat() == w.isoformat()
            assert (g.tzinfo is None) == (w.tzinfo is None)


def test_records_equal_to_pylist_for_every_column_kind() -> None:
    batch = pa.record_batch({
        "id": [1, None, 3], "name": ["a", None, "ç"],
        "at": pa.array([0, None, 1_700_000_000_123_456], pa.timestamp("us", "UTC")),
        "local": pa.array([0, 5, None], pa.timestamp("ms")),
        "tags": [["x"], [], None], "ok": [True, False, None]})
    assert records(batch) == batch.to_pylist()
    assert records(batch.select([])) == [{}, {}, {}]
    chunked = pa.chunked_array([pa.array([1, None], pa.timestamp("s", "UTC")),
                                pa.array([2], pa.timestamp("s", "UTC"))])
    assert pylist(chunked) == chunked.to_pylist()

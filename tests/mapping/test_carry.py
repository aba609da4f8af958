"""conn.mapping.carry against a plain model of its documented rule: JSON carries finite
numbers and dates/timestamps in the years 0001-9999, at any depth; nothing else."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
from conn.mapping.carry import json_failures, temporal_out_of_range
from conn.mapping.coerce import coerce
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples

#: Days from 1970-01-01 of 0001-01-01 and of 9999-12-31.
FIRST_DAY, LAST_DAY = -719162, 2932896
US_PER_DAY = 86_400_000_000


def carried(value: object) -> bool:
    """The documented rule, written without Arrow."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):  # days (date32) in these tests
        return FIRST_DAY <= value <= LAST_DAY
    if isinstance(value, list):
        return all(carried(v) for v in value)
    if isinstance(value, dict):
        return all(carried(v) for v in value.values())
    raise TypeError(value)


def bad_rows(arr: pa.Array) -> np.ndarray:
    mask = np.zeros(len(arr), dtype=bool)
    for m, _ in json_failures("f", arr):
        mask |= m
    return mask


floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
days = st.one_of(st.none(), st.integers(-2**31, 2**31 - 1),
                 st.integers(FIRST_DAY - 2, FIRST_DAY + 2),
                 st.integers(LAST_DAY - 2, LAST_DAY + 2))


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(floats, max_size=30), st.integers(0, 5))
def test_floats_match_the_model(values: list, offset: int) -> None:
    arr = pa.array(values, pa.float64()).slice(min(offset, len(values)))
    assert bad_rows(arr).tolist() == [not carried(v) for v in arr.to_pylist()]


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(days, max_size=30), st.integers(0, 5))
def test_dates_and_timestamps_match_the_model(values: list, offset: int) -> None:
    arr = pa.array(values, pa.int32()).view(pa.date32()).slice(min(offset, len(values)))
    ints = arr.view(pa.int32()).to_pylist()
    want = [not carried(v) for v in ints]
    assert bad_rows(arr).tolist() == want
    # The same instants as microsecond timestamps (naive and zoned), where they fit.
    fits = [v is None or abs(v) < 106_000_000 for v in ints]
    micros = pa.array([None if v is None else v * US_PER_DAY
                       for v, ok in zip(ints, fits, strict=True) if ok], pa.int64())
    kept = [w for w, ok in zip(want, fits, strict=True) if ok]
    for t in (pa.timestamp("us"), pa.timestamp("us", "UTC"), pa.timestamp("us", "+05:00")):
        assert bad_rows(micros.view(t)).tolist() == kept


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(floats, max_size=4)), max_size=12),
       st.lists(st.one_of(st.none(), st.tuples(floats, days)), max_size=12))
def test_nested_values_match_the_model(lists: list, pairs: list) -> None:
    arr = pa.array(lists, pa.list_(pa.float64()))
    assert bad_rows(arr).tolist() == [not carried(v) for v in lists]
    t = pa.struct([pa.field("x", pa.float64()), pa.field("d", pa.int32())])
    structs = [None if p is None else {"x": p[0], "d": p[1]} for p in pairs]
    sarr = pa.array(structs, t)
    dated = pa.StructArray.from_arrays(
        [sarr.field("x"), sarr.field("d").view(pa.date32())], names=["x", "d"],
        mask=sarr.is_null())
    assert bad_rows(dated).tolist() == [not carried(v) for v in structs]


def test_reasons_name_the_field_and_the_value() -> None:
    arr = pa.array([1.0, float("nan"), float("inf"), float("-inf")])
    reasons = {r: m.tolist() for m, r in json_failures("score", arr)}
    assert reasons == {
        "score: NaN is not a number JSON can carry": [False, True, False, False],
        "score: Infinity is not a number JSON can carry": [False, False, True, False],
        "score: -Infinity is not a number JSON can carry": [False, False, False, True]}
    far = pa.array([dt.date(2024, 1, 1)]).cast(pa.date32())
    assert json_failures("born", far) == []
    # PostgreSQL's 'infinity'::date as ADBC delivers it.
    inf = pa.array([2147472691], pa.int32()).view(pa.date32())
    ((mask, reason),) = json_failures("born", inf)
    assert mask.tolist() == [True] and reason.startswith("born: a date outside the years")


def test_far_dates_are_not_formatted_into_text() -> None:
    # Formatting year 294246 gave "32103-01-10T..." or "<value out of range: ...>".
    arr = pa.array([106751617, 19723], pa.int32()).view(pa.date32())
    out, failed = coerce(arr, {"type": "string", "format": "date"})
    assert out.to_pylist() == [None, "2024-01-01"] and failed.tolist() == [True, False]
    ts = pa.array([-9222425352054775809, 0], pa.int64()).view(pa.timestamp("us", "UTC"))
    out, failed = coerce(ts, {"type": "string", "format": "date-time"})
    assert out[0].as_py() is None and failed.tolist() == [True, False]
    assert temporal_out_of_range(pa.array([1.0])) is None

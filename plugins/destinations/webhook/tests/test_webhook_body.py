"""The request body: orjson (for batches whose floats are finite) and the standard
library write the same JSON values; a NaN or infinity is never sent."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid

import pyarrow as pa
import pytest
from conn.pyvalues import records as pyrecords
from conn.testing.harness import write_records
from conn.testing.http import FaultServer
from conn_destination_webhook.destination import (
    WebhookDestination,
    encode,
    finite_floats,
    plain_datetimes,
)
from hypothesis import given, settings
from hypothesis import strategies as st

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False), st.text(),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())), st.dates(),
    st.times(timezones=st.one_of(st.none(), st.just(dt.UTC))),
    st.decimals(allow_nan=False, allow_infinity=False), st.binary(), st.uuids(),
    st.timedeltas(),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=8), values, max_size=5), max_size=5))
def test_orjson_body_holds_the_same_json_values(records: list[dict]) -> None:
    doc = {"sync": "s", "object": "o", "operation": "upsert", "match_key": "id",
           "records": records, "idempotency_keys": [str(i) for i in range(len(records))]}
    assert json.loads(encode(doc, finite=True)) == json.loads(encode(doc))


def test_floats_checked_per_column_nested_ones_take_the_standard_library() -> None:
    def batch(**cols: list) -> pa.RecordBatch:
        return pa.RecordBatch.from_pydict(cols)

    assert finite_floats(batch(a=[1.5, None], s=["x", "y"]))
    assert finite_floats(batch(a=[None, None]))
    assert not finite_floats(batch(a=[1.0, math.nan]))
    assert not finite_floats(batch(a=[math.inf, 1.0]))
    assert not finite_floats(batch(s=[{"x": 1.0}]))  # nested floats: not checked
    assert finite_floats(batch(s=[{"x": 1}], l=[[1]]))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_nested_non_finite_float_is_never_sent(fault_server: FaultServer,
                                                 value: float) -> None:
    cfg = {"url": fault_server.url + "/hook"}
    d = WebhookDestination(cfg, instance="hook")
    res = write_records(d, "events", [{"id": "1", "s": {"x": value}}])
    assert res.pending == [0] and fault_server.requests == []


def test_same_body_for_the_arrow_types_a_batch_carries() -> None:
    rec = {"id": "1", "at": dt.datetime(2024, 5, 1, 12, 0, 0, 123, tzinfo=dt.UTC),
           "naive": dt.datetime(2024, 5, 1, 12), "day": dt.date(2024, 5, 1),
           "amount": decimal.Decimal("12.30"), "blob": b"\x00\x01", "u": uuid.UUID(int=5),
           "text": "é\u2028", "f": 1e16, "big": 2**63 + 5}
    doc = {"records": [rec]}
    assert json.loads(encode(doc, finite=True)) == json.loads(encode(doc))


#: Arrow's date and time types, with what :func:`plain_datetimes` is documented to say
#: of each (dates and timestamps without a zone or in UTC; not times of day, other zones
#: or nanoseconds).
TEMPORAL = [
    (pa.date32(), True), (pa.date64(), True),
    (pa.timestamp("s"), True), (pa.timestamp("ms"), True), (pa.timestamp("us"), True),
    (pa.timestamp("us", "UTC"), True), (pa.timestamp("ms", "Etc/UTC"), True),
    (pa.timestamp("s", "+00:00"), True), (pa.timestamp("ns"), False),
    (pa.timestamp("us", "Asia/Kolkata"), False), (pa.timestamp("us", "Europe/Amsterdam"), False),
    (pa.timestamp("s", "+05:30"), False), (pa.time64("us"), False), (pa.time32("ms"), False),
]


@st.composite
def temporal_batches(draw: st.DrawFn) -> pa.RecordBatch:
    n = draw(st.integers(1, 6))
    cols, fields = [], []
    for i in range(draw(st.integers(1, 3))):
        t, _ = draw(st.sampled_from(TEMPORAL))
        if pa.types.is_time(t):
            per_day = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000}[t.unit]
            ints = st.integers(0, per_day - 1)
        elif pa.types.is_date(t):
            ints = st.integers(-719_162, 2_932_896)  # 0001-01-01 .. 9999-12-31
            if t == pa.date64():
                ints = ints.map(lambda d: d * 86_400_000)
        else:
            per = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[t.unit]
            lo, hi = (-62_135_596_800, 253_402_300_799) if t.unit != "ns" else (-2**33, 2**33)
            ints = st.integers(lo * per, hi * per + per - 1)
        raw = draw(st.lists(st.one_of(st.none(), ints), min_size=n, max_size=n))
        storage = pa.int32() if t.bit_width == 32 else pa.int64()
        col = pa.array(raw, storage).cast(t)
        if draw(st.booleans()):  # the same values inside a struct
            col = pa.StructArray.from_arrays([col], names=["v"])
        cols.append(col)
        fields.append(f"c{i}")
    return pa.RecordBatch.from_arrays(cols, names=fields)


@settings(max_examples=300, deadline=None)
@given(temporal_batches())
def test_datetimes_are_written_as_isoformat_writes_them(batch: pa.RecordBatch) -> None:
    """The body orjson writes for a batch's dates and timestamps, trusted with them
    where :func:`plain_datetimes` allows it, equals the standard library's, which writes
    each through ``isoformat()``."""
    try:
        rows = pyrecords(batch)
    except (OverflowError, ValueError):  # beyond Python's datetime: pyarrow refuses too
        return
    doc = {"records": rows}
    fast = encode(doc, finite=True, plain_datetimes=plain_datetimes(batch.schema))
    assert json.loads(fast) == json.loads(encode(doc))


@pytest.mark.parametrize(("t", "plain"), TEMPORAL)
def test_which_datetimes_orjson_writes_itself(t: pa.DataType, plain: bool) -> None:
    assert plain_datetimes(pa.schema([("a", pa.int64()), ("t", t)])) is plain
    assert plain_datetimes(pa.schema([("s", pa.struct([("t", t)]))])) is plain
    assert plain_datetimes(pa.schema([("l", pa.list_(t))])) is plain
    assert plain_datetimes(pa.schema([("d", pa.dictionary(pa.int32(), pa.string()))]))

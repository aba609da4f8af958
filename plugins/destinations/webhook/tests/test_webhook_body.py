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
from conn.testing.harness import write_records
from conn.testing.http import FaultServer
from conn_destination_webhook.destination import WebhookDestination, encode, finite_floats
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

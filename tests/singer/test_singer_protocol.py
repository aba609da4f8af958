"""conn.singer: JSON Schema <-> Arrow, bulk RECORD conversion, message encoding, catalogs."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from conn.singer import catalog, schema
from conn.singer import protocol as sp

SCHEMA = {"type": "object", "properties": {
    "id": {"type": ["integer"]},
    "name": {"type": ["null", "string"]},
    "ts": {"type": ["string", "null"], "format": "date-time"},
    "day": {"type": "string", "format": "date"},
    "n": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}]},
    "addr": {"type": ["object", "null"], "properties": {"zip": {"type": "integer"}}},
    "tags": {"type": ["array", "null"], "items": {"type": "string"}},
    "blob": {},
}}


def test_json_schema_to_arrow() -> None:
    s = schema.json_schema_to_arrow(SCHEMA)
    assert s.field("id").type == pa.int64() and not s.field("id").nullable
    assert s.field("name").type == pa.string() and s.field("name").nullable
    assert s.field("ts").type == pa.timestamp("us", "UTC")
    assert s.field("day").type == pa.date32()
    assert s.field("n").type == pa.float64()
    assert s.field("addr").type == pa.struct([pa.field("zip", pa.int64())])
    assert pa.types.is_list(s.field("tags").type)
    assert s.field("blob").metadata == schema.JSON_META


@pytest.mark.parametrize("bulk_schema", [True, False])
def test_record_lines_convert_in_bulk(bulk_schema: bool) -> None:
    js = SCHEMA if not bulk_schema else {**SCHEMA, "properties": {
        k: v for k, v in SCHEMA["properties"].items() if k != "blob"}}
    conv = sp.RecordConverter(js)
    assert conv.bulk is bulk_schema
    lines = [sp.dumps({"type": "RECORD", "stream": "s", "record": r}) for r in (
        {"id": 1, "ts": "2024-01-01T01:00:00+01:00", "day": "2024-01-02", "n": 2,
         "addr": {"zip": 9}, "tags": ["a"], "blob": {"x": 1}, "unknown": True},
        {"id": 2, "ts": "2024-01-01T00:00:00", "day": "2024-01-03"},
    )]
    rows = conv.from_lines(lines).to_pylist()
    assert rows[0]["ts"] == rows[1]["ts"] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert rows[0]["addr"] == {"zip": 9} and rows[0]["n"] == 2.0
    if not bulk_schema:
        assert rows[0]["blob"] == '{"x":1}'


def test_bad_record_is_located() -> None:
    conv = sp.RecordConverter(SCHEMA)
    lines = [b'{"type":"RECORD","record":{"id":1,"day":"2024-01-01"}}',
             b'{"type":"RECORD","record":{"id":"x","day":"2024-01-01"}}']
    with pytest.raises(sp.SchemaMismatch):
        conv.from_lines(lines)
    assert conv.first_bad(lines)[0] == 1


def test_arrow_round_trip_and_messages() -> None:
    arrow = schema.json_schema_to_arrow(SCHEMA)
    js = schema.arrow_to_json_schema(arrow, ["id"])
    assert js["properties"]["ts"] == {"type": ["string", "null"], "format": "date-time"}
    assert js["required"] == ["id"]
    assert schema.json_schema_to_arrow(js) == arrow
    batch = pa.RecordBatch.from_pylist(
        [{"id": 1, "ts": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}],
        schema=pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us", "UTC"))]))
    assert sp.record_lines("s", batch) == \
        b'{"type":"RECORD","stream":"s","record":{"id":1,"ts":"2024-01-01T00:00:00Z"}}\n'
    assert sp.loads(sp.state_message({"a": 1})) == {"type": "STATE", "value": {"a": 1}}


def test_select_streams() -> None:
    cat = {"streams": [{"tap_stream_id": "a", "stream": "a", "schema": {}},
                       {"tap_stream_id": "b", "stream": "b", "schema": {},
                        "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]}]}
    out = catalog.select_streams(cat, ["a"])
    tops = [e["metadata"][0]["metadata"]["selected"] for e in out["streams"]]
    assert tops == [True, False]


def test_decimals_are_written_with_their_exact_digits() -> None:
    import decimal
    import json

    d = decimal.Decimal
    batch = pa.RecordBatch.from_pylist(
        [{"id": 1, "p": d("6.85"), "nested": {"q": d("0.10")}},
         {"id": 2, "p": None, "nested": None}],
        schema=pa.schema([("id", pa.int64()), ("p", pa.decimal128(12, 2)),
                          ("nested", pa.struct([("q", pa.decimal128(38, 2))]))]))
    for out in (sp.encode_records("s", batch), sp.record_lines("s", batch)):
        first = out.splitlines()[0]
        assert b'"p":6.85' in first and b'"q":0.10' in first, first
        assert json.loads(first, parse_float=d)["record"]["p"] == d("6.85")
    assert sp.dumps([d("1E+30"), d("-0.000001")]) == b"[1E+30,-0.000001]"
    with pytest.raises((TypeError, ValueError)):
        sp.dumps(d("NaN"))


def test_decimals_stay_exact_without_orjson() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['orjson'] = None\n"
            "import decimal\nfrom conn.singer import protocol as sp\n"
            "assert sp._orjson is None\n"
            "print(sp.dumps({'a': decimal.Decimal('6.85'), 's': 'x\\x00conn-number-1:2'})"
            ".decode())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == '{"a":6.85,"s":"x\\u0000conn-number-1:2"}'


def test_json_problem_finds_the_first_row_json_cannot_carry() -> None:
    batch = pa.RecordBatch.from_pylist([{"x": 1.0, "l": [1.0]}, {"x": 2.0, "l": [float("inf")]},
                                        {"x": float("nan"), "l": []}])
    assert sp.json_problem(batch) == (1, "l[]: Infinity is not a number JSON can carry")
    assert sp.json_problem(batch.slice(2)) == (0, "x: NaN is not a number JSON can carry")
    assert sp.json_problem(batch.slice(0, 1)) is None


def test_metadata_overrides_follow_meltano() -> None:
    cat = {"streams": [
        {"tap_stream_id": "db-users", "stream": "users", "schema": {}, "metadata": [
            {"breadcrumb": [], "metadata": {"selected-by-default": False}}]},
        {"tap_stream_id": "db-orders", "stream": "orders", "schema": {}},
        {"tap_stream_id": "other", "stream": "other", "schema": {}}]}
    out = catalog.apply_metadata(cat, {
        "db-*": {"selected": True, "replication-method": "INCREMENTAL",
                 "replication-key": "updated_at", "email": {"selected": False},
                 "properties": {"address": {"city": {"selected": False}}}},
        "db-orders": {"replication-method": "FULL_TABLE",
                      "table-key-properties": ["order_id"]}})
    users, orders, other = out["streams"]
    md = {tuple(m["breadcrumb"]): m["metadata"] for m in users["metadata"]}
    assert md[()] == {"selected-by-default": False, "selected": True,
                      "replication-method": "INCREMENTAL", "replication-key": "updated_at"}
    assert md[("properties", "email")] == {"selected": False}
    assert md[("properties", "address", "properties", "city")] == {"selected": False}
    assert users["replication_method"] == "INCREMENTAL" and users["selected"] is True
    assert catalog.stream_replication_method(orders) == "FULL_TABLE"  # later rule wins
    assert catalog.stream_key_properties(orders) == ["order_id"]
    assert catalog.stream_replication_key(users) == "updated_at"
    assert catalog.deselected_properties(users) == {"email"}
    assert "metadata" not in other and "metadata" not in cat["streams"][1]
    assert catalog.stream_selected(users) is True and catalog.stream_selected(other) is None


#: Every public name of ``conn.singer_protocol`` before the package ``conn.singer``, by the
#: module that holds it now.
MOVED = {
    "protocol": ["DELETED_AT", "RecordConverter", "SchemaMismatch", "conform", "dumps",
                 "encode_records", "exact_number", "json_problem", "json_ready", "loads",
                 "record_lines", "schema_message", "state_message"],
    "schema": ["JSON_META", "arrow_to_json_schema", "arrow_type_to_json_schema",
               "field_to_json_schema", "json_schema_to_arrow", "property_to_field"],
    "catalog": ["apply_metadata", "deselected_properties", "metadata_rules", "select_streams",
                "stream_key_properties", "stream_replication_key",
                "stream_replication_method", "stream_selected"],
    "process": ["connector_name", "resolve_command", "tail", "write_private_json"],
}


def test_the_former_module_still_offers_every_name() -> None:
    import importlib

    from conn import singer_protocol

    for module, names in MOVED.items():
        new = importlib.import_module(f"conn.singer.{module}")
        for name in names:
            assert getattr(singer_protocol, name) is getattr(new, name), name
    assert sorted(singer_protocol.__all__) == sorted(n for ns in MOVED.values() for n in ns)

"""Rows from message queues (conn.messages): a declared stream schema, JSON messages
decoded into Arrow, and every message that is not a JSON object of the declared columns
listed with a reason (never dropped)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from conn.errors import ConfigError
from conn.messages import declared_stream, decode_json

SPEC = {"columns": {"id": "integer", "email": "string", "at": "timestamp", "ok": "boolean"},
        "primary_key": "id"}


def test_declared_columns_become_an_arrow_schema_and_key():
    schema, key = declared_stream(SPEC, path="sources.q.config.stream")
    assert key == ("id",)
    assert schema.field("id").type == pa.int64() and not schema.field("id").nullable
    assert schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("ok").type == pa.bool_()


@pytest.mark.parametrize("spec, where, words", [
    ({"columns": {"id": "int"}, "primary_key": "id"}, "stream.columns.id", "unknown type"),
    ({"columns": {"id": "integer"}, "primary_key": ["email"]}, "stream.primary_key",
     "not among the declared columns"),
    ({"columns": {}, "primary_key": "id"}, "stream.columns", "mapping"),
])
def test_a_bad_declaration_names_where_and_what_was_expected(spec, where, words):
    with pytest.raises(ConfigError) as err:
        declared_stream(spec, path="stream")
    assert err.value.path == where and words in str(err.value)


def test_messages_decode_in_order_ignoring_undeclared_fields():
    schema, _ = declared_stream(SPEC, path="s")
    batch, rejected = decode_json(
        [b'{"id": 1, "email": "a@x", "extra": [1]}', b'{"id": 2, "at": "2024-01-02T03:04:05Z"}'],
        ["m1", "m2"], schema)
    assert rejected == []
    assert batch.schema == schema
    rows = batch.to_pylist()
    assert [r["id"] for r in rows] == [1, 2] and rows[0]["email"] == "a@x"
    assert rows[1]["at"].year == 2024 and rows[1]["email"] is None


def test_every_bad_message_is_listed_with_a_reason_and_the_others_kept():
    schema, _ = declared_stream(SPEC, path="s")
    payloads = [b'{"id": 1}', b'{not json', b'[1, 2]', b'{"id": "seven"}', b'{"email": "x"}',
                b'\xff\xfe', b'{\n  "id": 9\n}']
    batch, rejected = decode_json(payloads, [f"m{i}" for i in range(7)], schema)
    assert batch.column("id").to_pylist() == [1, 9]
    reasons = dict(rejected)
    assert sorted(reasons) == ["m1", "m2", "m3", "m4", "m5"]
    assert "not valid JSON" in reasons["m1"]
    assert "not an object" in reasons["m2"]
    assert "declared columns" in reasons["m3"] and "declared columns" in reasons["m4"]


def test_no_messages_give_an_empty_batch():
    schema, _ = declared_stream(SPEC, path="s")
    batch, rejected = decode_json([], [], schema)
    assert batch.num_rows == 0 and batch.schema == schema and rejected == []

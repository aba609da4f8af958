"""The singer destination against real PyPI targets and an in-suite singer-sdk target."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from conn import secrets
from conn.plugins import Registry
from conn.testing.harness import make_request, write_records
from conn_destination_singer.destination import SingerDestination, TargetError

ROWS = [
    {"id": 1, "email": "a@x.org", "ltv": 10.5,
     "seen": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)},
    {"id": 2, "email": "b@x.org", "ltv": None,
     "seen": dt.datetime(2024, 2, 3, 4, 5, 6, tzinfo=dt.UTC)},
    {"id": 3, "email": "c@x.org", "ltv": 3.0, "seen": None},
]


def dest(command, config, batch_size=10000, **extra) -> SingerDestination:
    return SingerDestination({"command": command, "config": config, "batch_size": batch_size,
                              "objects": [{"name": "contacts", "identifiers": ["id"]}],
                              **extra})


def test_constructor_takes_the_project_folder_like_every_connector(tmp_path: Path) -> None:
    # The connector constructor's keywords (instance, project_dir): relative paths in
    # config then resolve against the project folder.
    d = SingerDestination({"command": "target-unused"}, instance="warehouse_target",
                          project_dir=tmp_path)
    assert d.instance == "warehouse_target"
    assert d.resolve_path("out.jsonl") == tmp_path / "out.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_entry_point_registers_destination() -> None:
    reg = Registry()
    reg.load("destinations", ["singer"])
    assert reg.destination_class("singer") is SingerDestination


def test_target_jsonl_from_pypi(target_jsonl: Path, tmp_path: Path) -> None:
    d = dest(str(target_jsonl), {"destination_path": str(tmp_path),
                                 "do_timestamp_file": False}, batch_size=2)
    d.check()
    res = write_records(d, "contacts", ROWS)
    assert res.pending == [] and res.rejected == [] and res.error is None
    got = read_jsonl(tmp_path / "contacts.jsonl")
    assert [r["id"] for r in got] == [1, 2, 3]
    assert got[0]["seen"] == "2024-01-02T03:04:05Z" and got[1]["ltv"] is None


@pytest.mark.slow
def test_meltanolabs_target_csv_from_pypi(target_csv: Path, tmp_path: Path) -> None:
    # target-csv rewrites its file (header) every run, and conn runs a target once per
    # batch: keep the whole write in one batch.
    d = dest(str(target_csv), {"output_path": str(tmp_path)})
    res = write_records(d, "contacts", ROWS)
    assert res.pending == [] and res.error is None
    (out,) = tmp_path.glob("*.csv")
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["email"] for r in rows] == ["a@x.org", "b@x.org", "c@x.org"]


def test_nested_values_and_schema_message(edge_target: list[str], tmp_path: Path) -> None:
    batch = pa.RecordBatch.from_pylist(
        [{"id": 1, "profile": {"age": 30, "langs": ["en"]}, "day": dt.date(2024, 5, 1)}],
        schema=pa.schema([("id", pa.int64()),
                          ("profile", pa.struct([("age", pa.int32()),
                                                 ("langs", pa.list_(pa.string()))])),
                          ("day", pa.date32())]))
    d = dest(edge_target, {"output_dir": str(tmp_path)})
    assert write_records(d, "contacts", batch).pending == []
    (rec,) = read_jsonl(tmp_path / "contacts.jsonl")
    assert rec["profile"] == {"age": 30, "langs": ["en"]}
    assert rec["day"] == "2024-05-01"
    # The SCHEMA conn sends types every column and keys the stream on the match key.
    req = make_request(d, "contacts", batch)
    schema_msg = d.describe_requests(req)[0]["messages"][0]
    assert schema_msg["key_properties"] == ["id"]
    assert schema_msg["schema"]["properties"]["profile"]["properties"]["langs"]["type"] == \
        ["array", "null"]


@pytest.mark.slow
def test_deletes_are_soft_deletes(edge_target: list[str], tmp_path: Path) -> None:
    # For deletes conn merges `delete_config` (default: add_record_metadata) into the
    # target config, so singer-sdk targets keep `_sdc_deleted_at`.
    d = dest(edge_target, {"output_dir": str(tmp_path)})
    res = write_records(d, "contacts", [{"id": 7}, {"id": 8}], operation="delete")
    assert res.pending == []
    got = read_jsonl(tmp_path / "contacts.jsonl")
    assert [r["id"] for r in got] == [7, 8]
    assert all(r["_sdc_deleted_at"] for r in got)


@pytest.mark.slow
def test_batches_each_confirmed(edge_target: list[str], tmp_path: Path) -> None:
    d = dest(edge_target, {"output_dir": str(tmp_path)}, batch_size=2)
    res = write_records(d, "contacts", ROWS, operation="insert")
    assert res.pending == []
    assert len(read_jsonl(tmp_path / "contacts.jsonl")) == 3


def test_failing_target_leaves_rows_pending(edge_target: list[str], tmp_path: Path) -> None:
    secrets.clear()
    d = dest(edge_target, {"output_dir": str(tmp_path), "fail": True, "password": "hunter22"})
    res = write_records(d, "contacts", ROWS)
    assert res.pending == [0, 1, 2]
    assert isinstance(res.error, TargetError)
    msg = str(res.error)
    assert "exited with code" in msg and "disk full" in msg and "'contacts'" in msg
    assert "hunter22" not in msg
    assert not (tmp_path / "contacts.jsonl").exists()


def test_target_that_never_echoes_state_confirms_nothing(tmp_path: Path) -> None:
    script = tmp_path / "silent_target.py"
    script.write_text("import sys\nsys.stdin.read()\n")
    import sys

    d = dest([sys.executable, str(script)], {})
    res = write_records(d, "contacts", ROWS)
    assert res.pending == [0, 1, 2]
    assert "without echoing" in str(res.error)


def test_missing_executable_fails_check() -> None:
    from conn.errors import CheckFailed

    with pytest.raises(CheckFailed):
        dest("/nonexistent/target-nope", {}).check()


def test_object_without_fields_takes_every_field() -> None:
    # Set up as the README shows (identifiers, no fields), the object was closed to its
    # identifiers: a passthrough mapping sent only the key and reported success.
    d = dest("target-unused", {})
    obj = d.object("contacts")
    assert obj.fields.get("additionalProperties") is True and obj.identifiers == ("id",)
    # The Singer spec has no erasure (README): conn forget sends a (soft) delete.
    assert "erase" not in obj.capabilities.operations() and obj.capabilities.supports_delete
    typed = SingerDestination({"command": "t", "objects": [
        {"name": "c", "identifiers": ["id"], "fields": {"ltv": {"type": "number"}}}]})
    assert "additionalProperties" not in typed.object("c").fields
    assert set(typed.object("c").properties) == {"id", "ltv"}


def test_decimals_reach_the_target_as_their_exact_digits() -> None:
    import decimal

    d = dest("target-unused", {})
    batch = pa.RecordBatch.from_pylist(
        [{"id": 1, "ltv": decimal.Decimal("6.85")}, {"id": 2, "ltv": decimal.Decimal("0.10")}],
        schema=pa.schema([("id", pa.int64()), ("ltv", pa.decimal128(12, 2))]))
    text = d.messages(delivery_request(d, batch), {"m": 1}).decode()
    assert '"ltv":6.85' in text and '"ltv":0.10' in text and "6.8500000000000005" not in text


def delivery_request(d: SingerDestination, batch: pa.RecordBatch):
    return make_request(d, "contacts", batch, match_key="id")

"""Tests of the ``files`` destination; every write goes through the runtime delivery path."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conn.destination import object_schema_errors
from conn.errors import CheckFailed, ConfigError
from conn.testing.harness import make_request, write_records
from conn_destination_files.destination import FilesDestination, dictionary_columns
from hypothesis import given, settings
from hypothesis import strategies as st

ROWS = [
    {"id": 1, "email": "ana@example.com", "name": "Ana Müller", "ltv": 10.5},
    {"id": 2, "email": None, "name": "東京 🚀", "ltv": None},
    {"id": 3, "email": "zoe@example.com", "name": 'Zoë "q", c', "ltv": 0.0},
]


def make(tmp_path: Path, **config: object) -> FilesDestination:
    cfg = {"path": str(tmp_path / "out"), **config}
    FilesDestination.validate_config(cfg)
    return FilesDestination(cfg, instance="landing")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def parquet_log(folder: Path) -> pa.Table:
    parts = sorted(folder.glob("part-*.parquet"))
    schema = pa.unify_schemas([pq.read_schema(p) for p in parts])
    return ds.dataset([str(p) for p in parts], schema=schema, format="parquet").to_table()


def test_objects_default_and_configured(tmp_path: Path) -> None:
    dest = make(tmp_path, objects={"contacts": {
        "identifiers": ["email"],
        "fields": {"properties": {"email": {"type": "string"}, "ltv": {"type": "number"}}},
    }, "audience": {"identifiers": ["user_id"]}})
    objs = {o.name: o for o in dest.objects()}
    assert set(objs) == {"contacts", "audience", "records"}
    assert objs["records"].identifiers == ("id",)
    assert objs["contacts"].identifiers == ("email",)
    assert objs["contacts"].fields["type"] == "object"
    for obj in objs.values():
        assert object_schema_errors(obj) == []
        caps = obj.capabilities
        assert caps.batch_size == 100_000 and caps.supports_delete
        assert caps.operations() == {"upsert", "insert", "update", "delete", "append", "erase"}


def test_identifier_must_be_a_field(tmp_path: Path) -> None:
    dest = make(tmp_path, objects={"c": {"identifiers": ["email"],
                                         "fields": {"properties": {"id": {}}}}})
    with pytest.raises(ConfigError) as err:
        dest.objects()
    assert err.value.path == "config.objects.c.identifiers"


def test_jsonl_change_log_with_deletes(tmp_path: Path) -> None:
    with make(tmp_path) as dest:
        assert write_records(dest, "records", ROWS).rejected == []
        log = tmp_path / "out" / "records.jsonl"
        # Durable and readable before close: the acknowledgement is honest.
        assert len(jsonl(log)) == 3
        write_records(dest, "records", [{"id": 3}], operation="delete")
        write_records(dest, "records", [{"id": 4, "name": "x"}], operation="append")
    rows = jsonl(log)
    assert [r["_op"] for r in rows] == ["upsert"] * 3 + ["delete", "append"]
    assert rows[0] == {**ROWS[0], "_op": "upsert"}
    assert rows[1] == {**ROWS[1], "_op": "upsert"}  # nulls and unicode survive
    assert rows[2]["name"] == 'Zoë "q", c'
    assert rows[3] == {"id": 3, "_op": "delete"}


def test_jsonl_appends_across_runs_and_repairs_a_torn_tail(tmp_path: Path) -> None:
    with make(tmp_path) as dest:
        write_records(dest, "records", ROWS[:1])
    log = tmp_path / "out" / "records.jsonl"
    with open(log, "ab") as f:  # a crash mid-write of an unacknowledged batch
        f.write(b'{"id": 9, "na')
    with make(tmp_path) as dest:
        write_records(dest, "records", ROWS[1:2])
    assert [r["id"] for r in jsonl(log)] == [1, 2]


def test_failed_write_leaves_log_unchanged_and_rows_pending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with make(tmp_path) as dest:
        write_records(dest, "records", ROWS[:1])
        log = tmp_path / "out" / "records.jsonl"
        before = log.read_bytes()

        def broken(fd: int) -> None:
            raise OSError(5, "I/O error")

        monkeypatch.setattr(os, "fsync", broken)
        result = write_records(dest, "records", ROWS[1:])
        monkeypatch.undo()
        assert result.pending == [0, 1] and result.error is not None
        assert log.read_bytes() == before
        write_records(dest, "records", ROWS[1:])
    assert [r["id"] for r in jsonl(log)] == [1, 2, 3]


def test_csv_log_keeps_header_and_aligns_deletes(tmp_path: Path) -> None:
    with make(tmp_path, format="csv") as dest:
        write_records(dest, "records", ROWS)
        write_records(dest, "records", [{"id": 2}], operation="delete")
        write_records(dest, "records", [{"id": 5, "name": "only name"}], operation="insert")
        log = tmp_path / "out" / "records.csv"
        assert log.read_text(encoding="utf-8").count("_op") == 1
        extra = write_records(dest, "records", [{"id": 6, "colour": "red"}])
        assert len(extra.rejected) == 1 and not extra.rejected[0].retryable
        assert "colour" in extra.rejected[0].reason
        nested = write_records(dest, "records", [{"id": 7, "tags": ["a"]}])
        assert "nested" in nested.rejected[0].reason
    table = pcsv.read_csv(log, convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
    assert table.schema.names == ["id", "email", "name", "ltv", "_op"]
    rows = table.to_pylist()
    assert [r["_op"] for r in rows] == ["upsert"] * 3 + ["delete", "insert"]
    assert rows[1]["name"] == "東京 🚀" and rows[1]["email"] is None
    assert rows[2]["name"] == 'Zoë "q", c'
    assert rows[3]["id"] == 2 and rows[3]["name"] is None
    assert rows[4]["name"] == "only name"


def test_parquet_parts_are_durable_per_batch_with_type_fidelity(tmp_path: Path) -> None:
    batch = pa.table({
        "id": pa.array([1, 2], pa.int64()),
        "when": pa.array([dt.datetime(2024, 5, 6, 7, 8, 9), None], pa.timestamp("us", "UTC")),
        "amount": pa.array([decimal.Decimal("1.25"), None], pa.decimal128(9, 2)),
        "tags": pa.array([["a", "ü"], None], pa.list_(pa.string())),
    })
    folder = tmp_path / "out" / "records"
    with make(tmp_path, format="parquet") as dest:
        write_records(dest, "records", batch)
        # Complete and readable before close.
        assert [p.name for p in folder.iterdir()] == ["part-000001.parquet"]
        part = pq.read_table(folder / "part-000001.parquet")
        write_records(dest, "records", [{"id": 2}], operation="delete")
    assert part.drop_columns(["_op"]).equals(batch)
    with make(tmp_path, format="parquet") as dest:  # numbering continues across runs
        write_records(dest, "records", batch.slice(0, 1))
    assert sorted(p.name for p in folder.iterdir()) == [
        "part-000001.parquet", "part-000002.parquet", "part-000003.parquet"]
    log = parquet_log(folder)
    assert log.column("_op").to_pylist() == ["upsert", "upsert", "delete", "upsert"]


def test_only_columns_that_repeat_are_dictionary_encoded(tmp_path: Path) -> None:
    n = 5000
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),                      # unique
        "email_sha256": pa.array([f"{i:064x}" for i in range(n)]),  # unique
        "country": pa.array(["DE", "FR", None][i % 3] for i in range(n)),
        "plan": pa.array(["pro"] * n).dictionary_encode(),
        "tags": pa.array([["a"]] * n, pa.list_(pa.string())),     # nested: left plain
        "half": pa.array([i // 2 for i in range(n)], pa.int32()),  # half distinct: yes
    })
    assert dictionary_columns(table) == ["country", "plan", "half"]
    assert dictionary_columns(table.slice(0, 0)) == ["plan"]
    with make(tmp_path, format="parquet") as dest:
        write_records(dest, "records", table)
    part = tmp_path / "out" / "records" / "part-000001.parquet"
    meta = pq.read_metadata(part).row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings
                 for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encodings["country"]
    assert "RLE_DICTIONARY" not in encodings["email_sha256"]
    read = pq.read_table(part).drop_columns(["_op"])
    assert read.column("country").to_pylist() == table.column("country").to_pylist()
    assert read.column("plan").to_pylist() == ["pro"] * n


@pytest.mark.parametrize("codec", ["snappy", "zstd", "none"])
def test_columns_the_codec_would_not_shrink_are_stored_uncompressed(tmp_path: Path,
                                                                     codec: str) -> None:
    import hashlib

    import numpy as np

    n = 5000
    rng = np.random.default_rng(3)
    table = pa.table({
        "email_sha256": pa.array([hashlib.sha256(str(i).encode()).hexdigest()
                                  for i in range(n)]),                     # random hex
        "email": pa.array([f"customer.{i:06d}@example.com" for i in range(n)]),  # repeats
        "ltv": pa.array(rng.random(n)),                                    # random doubles
        "seq": pa.array(range(n), pa.int64()),                             # small ints
        "with_nulls": pa.array([None if i % 2 else "x" * 40 for i in range(n)]),
        "tags": pa.array([["a", f"t{i % 9}"] for i in range(n)], pa.list_(pa.string())),
        "address": pa.array([{"city": "Lyon", "zip": str(i % 50)} for i in range(n)]),
    })
    with make(tmp_path, format="parquet", compression=codec) as dest:
        write_records(dest, "records", table)
    part = tmp_path / "out" / "records" / "part-000001.parquet"
    meta = pq.read_metadata(part).row_group(0)
    got = {meta.column(i).path_in_schema: meta.column(i).compression
           for i in range(meta.num_columns)}
    name = "UNCOMPRESSED" if codec == "none" else codec.upper()
    assert got["ltv"] == "UNCOMPRESSED"
    # zstd's entropy coding halves hex digits; Snappy's byte matching gains nothing
    assert got["email_sha256"] == ("ZSTD" if codec == "zstd" else "UNCOMPRESSED")
    assert got["email"] == got["seq"] == got["with_nulls"] == name
    # nested columns' leaves keep the codec (a per-column dict names the leaves)
    assert got["tags.list.element"] == got["address.city"] == got["address.zip"] == name
    read = pq.read_table(part).drop_columns(["_op"])
    assert read.equals(table)


def test_large_write_is_split_to_batch_size(tmp_path: Path) -> None:
    n = 120_000
    table = pa.table({"id": pa.array(range(n), pa.int64()),
                      "v": pa.array([i % 7 for i in range(n)], pa.int8())})
    with make(tmp_path, format="parquet") as dest:
        assert write_records(dest, "records", table).rejected == []
    parts = sorted((tmp_path / "out" / "records").glob("part-*.parquet"))
    assert [pq.read_metadata(p).num_rows for p in parts] == [100_000, 20_000]
    with make(tmp_path, format="jsonl") as dest:
        write_records(dest, "records", table)
    with open(tmp_path / "out" / "records.jsonl", "rb") as f:
        assert sum(1 for _ in f) == n


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_materialized_snapshot(tmp_path: Path, fmt: str) -> None:
    with make(tmp_path, format=fmt, materialize=True) as dest:
        write_records(dest, "records", ROWS)
        write_records(dest, "records", [{"id": 2, "email": "new@example.com",
                                         "name": "東京 🚀", "ltv": 3.0}], operation="update")
        write_records(dest, "records", [{"id": 3}], operation="delete")
    with make(tmp_path, format=fmt, materialize=True) as dest:  # a later run
        write_records(dest, "records", [{"id": 3, "email": "back@example.com",
                                         "name": "Zoë", "ltv": 1.0}])
        write_records(dest, "records", [{"id": 1}], operation="delete")
    snap = tmp_path / "out" / "_current" / f"records.{fmt}"
    if fmt == "jsonl":
        rows = jsonl(snap)
    elif fmt == "csv":
        rows = pcsv.read_csv(snap).to_pylist()
    else:
        rows = pq.read_table(snap).to_pylist()
    assert [(r["id"], r["email"]) for r in rows] == [(2, "new@example.com"),
                                                     (3, "back@example.com")]
    assert rows[0]["name"] == "東京 🚀"
    assert "_op" not in rows[0]
    assert not [p for p in snap.parent.iterdir() if p.name.startswith(".")]


FORMULAS = ["=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tx", "\r=x",
            "=HYPERLINK(\"http://evil\")"]
HARMLESS = ["-5", "+3.25", "-1e3", ".5", "plain", "a=b", " =x", "", None]


def csv_cells(path: Path) -> list[dict]:
    """The CSV's cells as text, exactly as a spreadsheet would get them."""
    opts = pcsv.ConvertOptions(column_types={"v": pa.string(), "id": pa.int64()},
                               strings_can_be_null=False)
    return pcsv.read_csv(path, convert_options=opts).to_pylist()


def test_csv_neutralises_formulas_by_default(tmp_path: Path) -> None:
    values = FORMULAS + HARMLESS
    rows = [{"id": i, "v": v} for i, v in enumerate(values)]
    with make(tmp_path, format="csv", materialize=True) as dest:
        write_records(dest, "records", rows)
        write_records(dest, "records", [{"id": 0}], operation="delete")
    got = [r["v"] for r in csv_cells(tmp_path / "out" / "records.csv")][:len(values)]
    assert got == ["'" + v for v in FORMULAS] + [v or "" for v in HARMLESS]
    snapshot = [r["v"] for r in csv_cells(tmp_path / "out" / "_current" / "records.csv")]
    assert snapshot == got[1:]  # the snapshot is read from the (neutralised) log


def test_csv_formula_escape_can_be_turned_off(tmp_path: Path) -> None:
    rows = [{"id": i, "v": v} for i, v in enumerate(FORMULAS)]
    with make(tmp_path, format="csv", csv_escape_formulas=False) as dest:
        write_records(dest, "records", rows)
    assert [r["v"] for r in csv_cells(tmp_path / "out" / "records.csv")] == FORMULAS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(st.sampled_from("=+-@\t\r.e5 a'\""),
                                             max_size=6)), min_size=1, max_size=20))
def test_no_csv_cell_starts_a_formula(tmp_path_factory, values: list[str | None]) -> None:
    """The OWASP rule as a model: a written cell starts with = + - @ tab or CR only when
    it is a plain number; every other cell is the value, or ' and the value."""
    folder = tmp_path_factory.mktemp("csv")
    with make(folder, format="csv") as dest:
        write_records(dest, "records", [{"id": i, "v": v} for i, v in enumerate(values)])
    for value, row in zip(values, csv_cells(folder / "out" / "records.csv"), strict=True):
        cell, value = row["v"], value or ""
        number = re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", value)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r") and not number:
            assert cell == "'" + value
        else:
            assert cell == value


def test_materialize_keeps_appends(tmp_path: Path) -> None:
    with make(tmp_path, materialize=True) as dest:
        write_records(dest, "records", [{"id": 1, "e": "a"}, {"id": 1, "e": "b"}],
                      operation="append")
    rows = jsonl(tmp_path / "out" / "_current" / "records.jsonl")
    assert [r["e"] for r in rows] == ["a", "b"]


def test_named_object_becomes_the_file_name(tmp_path: Path) -> None:
    with make(tmp_path, objects={"contacts": {"identifiers": ["email"]}}) as dest:
        write_records(dest, "contacts", ROWS[:1])
    assert jsonl(tmp_path / "out" / "contacts.jsonl")[0]["email"] == "ana@example.com"
    with make(tmp_path) as dest, pytest.raises(ConfigError, match="objects: records"):
        dest.object("nope")


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    with make(tmp_path) as dest:
        req = make_request(dest, "records", ROWS, dry_run=True)
        assert dest.write(req).rejected == []
        assert dest.describe_requests(req)[0]["records"][0]["id"] == 1
    assert not (tmp_path / "out" / "records.jsonl").exists()


def test_check_creates_folder_and_names_unwritable_path(tmp_path: Path) -> None:
    with make(tmp_path) as dest:
        dest.check()
    assert (tmp_path / "out").is_dir() and not list((tmp_path / "out").iterdir())
    (tmp_path / "blocker").write_text("a file, not a folder")
    bad = FilesDestination({"path": str(tmp_path / "blocker" / "out")})
    with pytest.raises(CheckFailed, match=re.escape(str(tmp_path / "blocker" / "out"))):
        bad.check()


def test_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert make(tmp_path, path="rel", base_dir=str(tmp_path)).root == tmp_path / "rel"
    monkeypatch.chdir(tmp_path)
    assert make(tmp_path, path="rel").root == tmp_path / "rel"


@pytest.mark.parametrize("config, where", [
    ({}, "path"),
    ({"path": "o", "format": "xml"}, "format"),
    ({"path": "o", "materialize": "yes"}, "materialize"),
    ({"path": "o", "objects": {"../evil": {}}}, "objects"),
    ({"path": "o", "objects": {"_current": {}}}, "objects"),
    ({"path": "o", "objects": {"c": {"identifiers": []}}}, "identifiers"),
    ({"path": "o", "objects": {"c": {"key": "id"}}}, "key"),
])
def test_config_schema_rejects_bad_config(config: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        FilesDestination.validate_config(config)


def test_discovered_through_entry_point() -> None:
    from conn.plugins import Registry

    assert Registry(autoload=True).destination_class("files") is FilesDestination


def test_entry_point_module_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from conn.plugins import Registry\n"
        "cls = Registry(autoload=True).destination_class('files')\n"
        "assert cls.__name__ == 'FilesDestination'\n"
        "print([m for m in ('duckdb', 'pyarrow.parquet', 'pyarrow.csv') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_text_formats_declare_json_values_parquet_any(tmp_path: Path) -> None:
    # The mapper rejects per row what JSON cannot carry (NaN, ±Infinity, far dates) for
    # JSONL and CSV; Parquet holds every Arrow value.
    for fmt, values in (("jsonl", "json"), ("csv", "json"), ("parquet", "arrow")):
        assert make(tmp_path, format=fmt).object("records").capabilities.values == values


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_binary_values_are_base64_text(tmp_path: Path, fmt: str) -> None:
    # DuckDB wrote bytes into JSONL as "Ren\\xE9": a rewrite nobody can tell from text.
    d = make(tmp_path, format=fmt)
    batch = pa.RecordBatch.from_pylist([{"id": 1, "raw": b"Ren\xe9"}, {"id": 2, "raw": None}])
    assert write_records(d, "records", batch).pending == []
    d.close()
    if fmt == "jsonl":
        got = jsonl(tmp_path / "out" / "records.jsonl")
        assert [r["raw"] for r in got] == ["UmVu6Q==", None]
    else:
        text = (tmp_path / "out" / "records.csv").read_text()
        assert "UmVu6Q==" in text and "\\x" not in text


SECRET = "ERASE-ME-5c1e"


def _people(tag: str) -> list[dict]:
    return [{"id": f"ada-{tag}", "email": f"{SECRET}@example.com", "name": f"Ada {SECRET}",
             "ltv": 1.5},
            {"id": f"bob-{tag}", "email": "bob@example.com", "name": 'Bob "q", =1+1',
             "ltv": None},
            {"id": f"cy-{tag}", "email": "", "name": "Cy, 東京 🚀", "ltv": 0.0}]


def _all_rows(root: Path, fmt: str) -> list[dict]:
    if fmt == "parquet":
        files = [*root.glob("records/part-*.parquet"), *root.glob("_current/*.parquet")]
        return [r for f in files for r in pq.read_table(f).to_pylist()]
    if fmt == "csv":
        return [r for f in root.rglob("*.csv") for r in _csv_text(f)]
    return [r for f in root.rglob("*.jsonl") for r in jsonl(f)]


def _csv_text(path: Path) -> list[dict]:
    """A CSV file's rows as text (null: an unquoted empty field)."""
    names = pcsv.open_csv(path).schema.names
    return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True,
        quoted_strings_can_be_null=False)).to_pylist()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_erase_rewrites_log_and_snapshot_without_the_person(tmp_path: Path, fmt: str) -> None:
    """``erase`` removes every row of the erased keys from the change log (upserts, the
    delete row, in every part file) and from the snapshot, appends nothing, keeps the other
    rows as they were and in order, leaves no temporary file, and works again in the same
    run as writes (the log handle is reopened); a second erase and unknown keys are
    acknowledged."""
    root = tmp_path / "out"
    d = make(tmp_path, format=fmt, materialize=True, compression="none")
    assert "erase" in d.object("records").capabilities.operations()
    for tag in ("a", "b"):
        res = write_records(d, "records", _people(tag))
        assert res.rejected == [] and res.pending == [], res
    write_records(d, "records", [{"id": "ada-b"}], operation="delete")
    d.close()
    before = [r for r in _all_rows(root, fmt) if not str(r["id"]).startswith("ada-")]
    text_before = {f: f.read_bytes() for f in root.rglob("*") if f.is_file()}
    d = make(tmp_path, format=fmt, materialize=True, compression="none")
    for _ in range(2):
        res = write_records(d, "records", [{"id": "ada-a"}, {"id": "ada-b"},
                                           {"id": "never-written"}], operation="erase")
        assert res.rejected == [] and res.pending == [] and res.error is None
    assert write_records(d, "records", _people("c")[1:]).rejected == []
    d.close()
    after = _all_rows(root, fmt)
    assert not [r for r in after if str(r["id"]).startswith("ada-")]
    assert not [r for r in after if SECRET in json.dumps(r)]
    untouched = [r for r in after if not str(r["id"]).endswith("-c")]
    assert sorted(map(json.dumps, untouched)) == sorted(map(json.dumps, before))
    files = [f for f in root.rglob("*") if f.is_file()]
    assert not [f for f in files if f.name.startswith(".")], "temporary file left"
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f
    if fmt == "jsonl":  # other lines are kept byte for byte, in order
        log = root / "records.jsonl"
        kept = [ln for ln in text_before[log].splitlines() if b'"id":"ada-' not in ln]
        assert log.read_bytes().splitlines()[:len(kept)] == kept
    snapshot = {r["id"] for r in _all_rows(root / "_current", fmt)} if fmt != "parquet" \
        else {r["id"] for r in pq.read_table(root / "_current" / "records.parquet").to_pylist()}
    assert snapshot == {"bob-a", "cy-a", "bob-b", "cy-b", "bob-c", "cy-c"}


def test_erase_in_the_same_run_as_writes(tmp_path: Path) -> None:
    d = make(tmp_path)
    write_records(d, "records", _people("a"))
    write_records(d, "records", [{"id": "ada-a"}], operation="erase")
    write_records(d, "records", _people("b"))
    d.close()
    ids = [r["id"] for r in jsonl(tmp_path / "out" / "records.jsonl")]
    assert ids == ["bob-a", "cy-a", "ada-b", "bob-b", "cy-b"]


def test_erase_of_a_csv_keeps_null_and_empty_text_apart(tmp_path: Path) -> None:
    d = make(tmp_path, format="csv")
    write_records(d, "records", [{"id": "1", "email": None, "name": "x"},
                                 {"id": "2", "email": "", "name": "=cmd"},
                                 {"id": "3", "email": "e", "name": "y"}])
    d.close()
    log = tmp_path / "out" / "records.csv"
    before = _csv_text(log)
    assert before[0]["email"] is None and before[1]["email"] == ""
    d = make(tmp_path, format="csv")
    write_records(d, "records", [{"id": "3"}], operation="erase")
    d.close()
    assert _csv_text(log) == before[:2]

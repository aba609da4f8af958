"""Tests of the ``files`` source, driven the way the runtime drives it."""

from __future__ import annotations

import datetime as dt
import gzip
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from conn.errors import CheckFailed, ConfigError, ConnError
from conn.testing.harness import read_all
from conn_source_files.source import FilesSource, _default_name

ROWS = [
    {"id": 1, "email": "ana@example.com", "name": "Ana Müller", "score": 1.5},
    {"id": 2, "email": None, "name": "東京 🚀", "score": None},
    {"id": 3, "email": "zoe@example.com", "name": "Zoë \"quoted\", comma", "score": -2.0},
]


def make(**config: object) -> FilesSource:
    FilesSource.validate_config(config)
    return FilesSource(config, instance="files")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture()
def big_parquet(tmp_path: Path) -> Path:
    n = 50_000
    table = pa.table({"id": pa.array(range(n), pa.int64()),
                      "label": pa.array([f"row {i}" for i in range(n)])})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=20_000)
    return path


def test_parquet_type_fidelity(tmp_path: Path) -> None:
    table = pa.table({
        "id": pa.array([1, 2], pa.int32()),
        "when": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("ms", "UTC")),
        "day": pa.array([dt.date(2024, 1, 2), None], pa.date32()),
        "amount": pa.array([None, 12], pa.decimal128(10, 2)),
        "tags": pa.array([["a"], None], pa.list_(pa.string())),
        "name": ["Ünïcødé", None],
    })
    pq.write_table(table, tmp_path / "t.parquet")
    with make(path=str(tmp_path / "t.parquet"), primary_key="id") as src:
        (info,) = src.discover()
        out, states = read_all(src, "t")
    assert info.name == "t" and info.primary_key == ("id",)
    assert states == []
    assert out.schema == table.schema
    assert out.equals(table)


def test_csv_nulls_unicode_and_quoting(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    pcsv.write_csv(pa.Table.from_pylist(ROWS), path)
    with make(path=str(path), primary_key=["id"]) as src:
        out, _ = read_all(src, "people")
    assert out.to_pylist() == ROWS
    assert out.schema.field("id").type == pa.int64()


def test_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "people.jsonl", ROWS)
    with make(path=str(path), format="jsonl") as src:
        out, _ = read_all(src, "people")
    assert out.to_pylist() == ROWS


def test_compressed_csv_and_tsv(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "a.csv.gz", "wt", encoding="utf-8") as f:
        f.write("id,name\n1,é\n2,\n")
    (tmp_path / "b.tsv").write_text("id\tname\n1\tx, y\n", encoding="utf-8")
    with make(streams={"a": {"path": str(tmp_path / "a.csv.gz")},
                       "b": {"path": str(tmp_path / "b.tsv")}}) as src:
        a, _ = read_all(src, "a")
        b, _ = read_all(src, "b")
    assert a.to_pylist() == [{"id": 1, "name": "é"}, {"id": 2, "name": None}]
    assert b.to_pylist() == [{"id": 1, "name": "x, y"}]


def test_folder_and_glob(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    (folder / "2024").mkdir(parents=True)
    write_jsonl(folder / "2024" / "a.jsonl", ROWS[:2])
    write_jsonl(folder / "b.jsonl", ROWS[2:])
    (folder / "README.md").write_text("not data")
    (folder / "_SUCCESS").write_text("")
    (folder / ".hidden.jsonl").write_text("garbage")
    with make(streams={"dir": {"path": str(folder)},
                       "glob": {"path": str(folder / "**" / "*.jsonl")}}) as src:
        by_dir, _ = read_all(src, "dir")
        by_glob, _ = read_all(src, "glob")
    assert sorted(by_dir.column("id").to_pylist()) == [1, 2, 3]
    assert sorted(by_glob.column("id").to_pylist()) == [1, 2, 3]


def test_folder_with_mixed_formats_needs_format(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", ROWS)
    pcsv.write_csv(pa.Table.from_pylist(ROWS), tmp_path / "b.csv")
    with make(path=str(tmp_path)) as src, pytest.raises(ConfigError) as err:
        src.discover()
    assert err.value.path == "config.format"
    with make(path=str(tmp_path), format="csv", name="people") as src:
        out, _ = read_all(src, "people")
    assert out.num_rows == 3


def test_large_file_streams_in_bounded_batches(big_parquet: Path) -> None:
    with make(path=str(big_parquet)) as src:
        stream = src.stream("big")
        gen = src.read_batches(stream, None, 1000)
        assert inspect.isgenerator(gen)
        first = next(gen)
        assert first.num_rows <= 1000
        gen.close()
        sizes = [b.num_rows for b in src.read(stream, None, 1000)]
    assert max(sizes) <= 1000
    assert sum(sizes) == 50_000


def test_large_csv_streams_in_bounded_batches(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    n = 40_000
    pcsv.write_csv(pa.table({"id": pa.array(range(n), pa.int64())}), path)
    with make(path=str(path)) as src:
        total = 0
        for batch in src.read(src.stream("big"), None, 2500):
            assert batch.num_rows <= 2500
            total += batch.num_rows
    assert total == n


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with make(path=str(missing)) as src, pytest.raises(CheckFailed,
                                                       match=re.escape(str(missing))):
        src.check()


def test_empty_glob_names_the_pattern(tmp_path: Path) -> None:
    with make(path=str(tmp_path / "*.csv")) as src, pytest.raises(CheckFailed,
                                                                  match=r"\*\.csv"):
        src.check()


def test_corrupt_file_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")
    with make(path=str(bad)) as src, pytest.raises(CheckFailed, match=r"bad\.parquet"):
        src.check()


def test_bad_rows_mid_read_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": 1}\n' * 10 + "{not json\n")
    with make(path=str(path)) as src, pytest.raises(ConnError, match=r"mixed\.jsonl"):
        read_all(src, "mixed")


def test_unknown_extension_asks_for_format(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("id\n1\n")
    with make(path=str(tmp_path / "data.txt")) as src, pytest.raises(ConfigError,
                                                                     match="format"):
        src.discover()
    with make(path=str(tmp_path / "data.txt"), format="csv") as src:
        out, _ = read_all(src, "data")
    assert out.to_pylist() == [{"id": 1}]


def test_primary_key_must_exist(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    with make(streams={"p": {"path": str(path), "primary_key": ["nope"]}}) as src, \
            pytest.raises(ConfigError) as err:
        src.discover()
    assert err.value.path == "config.streams.p.primary_key"


def test_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_jsonl(tmp_path / "p.jsonl", ROWS)
    with make(path="p.jsonl", base_dir=str(tmp_path)) as src:
        src.check()
    monkeypatch.chdir(tmp_path)
    with make(path="p.jsonl") as src:
        out, _ = read_all(src, "p")
    assert out.num_rows == 3


def test_unknown_stream_lists_streams(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    with make(path=str(path)) as src, pytest.raises(ConfigError, match="streams: p"):
        src.stream("q")


def test_duplicate_stream_names(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    with make(path=str(path), streams={"p": {"path": str(path)}}) as src, \
            pytest.raises(ConfigError, match="twice"):
        src.discover()


@pytest.mark.parametrize("path, name", [
    ("data/customers.csv.gz", "customers"),
    ("data/customers.parquet", "customers"),
    ("exports/*.parquet", "exports"),
    ("exports/**/x.csv", "exports"),
    ("exports", "exports"),
])
def test_default_stream_names(path: str, name: str) -> None:
    assert _default_name(path) == name


@pytest.mark.parametrize("config, where", [
    ({}, "path"),
    ({"path": "a.csv", "format": "xml"}, "format"),
    ({"path": "a.csv", "primary_key": 3}, "primary_key"),
    ({"path": "a.csv", "colour": "red"}, "colour"),
    ({"streams": {"a": {"format": "csv"}}}, "path"),
    ({"streams": {"a": {"path": "a.csv", "delimiter": ";;"}}}, "delimiter"),
    ({"streams": {}}, "streams"),
])
def test_config_schema_rejects_bad_config(config: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        FilesSource.validate_config(config)


def test_discovered_through_entry_point() -> None:
    from conn.plugins import Registry

    assert Registry(autoload=True).source_class("files") is FilesSource


def test_entry_point_module_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from conn.plugins import Registry\n"
        "assert Registry(autoload=True).source_class('files').__name__ == 'FilesSource'\n"
        "print('pyarrow.dataset' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"



def test_parquet_memory_bounded_by_batches_not_file(tmp_path: Path) -> None:
    """Reading a large Parquet file must not buffer the whole file (pyarrow's pre_buffer
    caches every row group of a fragment up front, and the scanner reads row groups
    ahead of a slow consumer: memory grew with the file)."""
    import time

    import pyarrow.compute as pc

    n = 2_000_000
    ids = pa.array(range(n), pa.int64())
    values = pc.binary_join_element_wise("value-padding-padding-", pc.cast(ids, pa.string()), "")
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": ids, "v": values}), path, row_group_size=n // 100,
                   compression="none", use_dictionary=False)
    src = make(path=str(path), primary_key="id")
    info = src.stream("big")
    base = pa.total_allocated_bytes()
    peak, rows = 0, 0
    for item in src.read(info, None, 20_000):
        rows += getattr(item, "num_rows", 0)
        peak = max(peak, pa.total_allocated_bytes() - base)
        time.sleep(0.002)  # a slow consumer: read-ahead, if any, piles up
    assert rows == n
    assert peak < path.stat().st_size / 10, (peak, path.stat().st_size)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_narrowed_stream_reads_only_its_columns(tmp_path: Path, fmt: str) -> None:
    """The runtime narrows the stream to the columns a sync uses (``projection``)."""
    table = pa.table({"id": [1, 2, 3], "email": ["a@x.io", "b@x.io", None],
                      "notes": ["n1", "n2", "n3"], "score": [1.5, 2.5, 3.5]})
    path = tmp_path / f"people.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        pcsv.write_csv(table, path)
    else:
        write_jsonl(path, table.to_pylist())
    src = make(path=str(path), primary_key="id")
    assert FilesSource.projection
    stream = src.stream("people").narrowed({"score"})
    batches = [b for b in src.read(stream) if isinstance(b, pa.RecordBatch)]
    got = pa.Table.from_batches(batches)
    assert got.column_names == ["id", "score"]
    assert got.column("score").to_pylist() == [1.5, 2.5, 3.5]


# --- text encodings: decoded exactly or refused, never escaped ------------------------------


def test_csv_encoding_option_decodes_other_encodings(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_bytes("id,name\n1,René\n2,Zoë\n".encode("cp1252"))
    table, _ = read_all(make(path=str(tmp_path / "p.csv"), encoding="cp1252"), "p")
    assert table["name"].to_pylist() == ["René", "Zoë"]
    assert FilesSource.config_schema["properties"]["encoding"]["default"] == "utf-8"
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        make(path=str(tmp_path / "p.csv"), encoding="klingon").discover()


@pytest.mark.parametrize("rows_before", [1, 200_000])
def test_undecodable_csv_bytes_fail_naming_file_and_line(tmp_path: Path,
                                                         rows_before: int) -> None:
    # Few rows: pyarrow infers a binary column (it was sent as "Ren\\xE9"); many rows:
    # the bad byte comes after the inferred block.
    path = tmp_path / "p.csv.gz"
    body = "".join(f"{i},Name{i}\n" for i in range(rows_before)).encode()
    with gzip.open(path, "wb") as fh:
        fh.write(b"id,name\n" + body + b"99999999,Ren\xe9\n")
    with pytest.raises(ConfigError) as err:
        read_all(make(path=str(path), primary_key="id"), "p")
    assert f"p.csv.gz line {rows_before + 2}: byte 0xE9 is not valid utf-8" in str(err.value)
    assert err.value.path == "config.encoding"


def test_undecodable_jsonl_fails_naming_file_and_line(tmp_path: Path) -> None:
    # pyarrow's JSON reader let invalid UTF-8 into string columns without a word.
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"id": 1, "name": "Ana"}\n{"id": 2, "name": "Ren\xe9"}\n')
    with pytest.raises(ConfigError, match=r"p\.jsonl line 2: byte 0xE9 is not valid utf-8"):
        read_all(make(path=str(path), primary_key="id"), "p")
    # A real U+FFFD (escaped or as UTF-8 bytes) is data, not an error.
    path.write_text('{"id": 1, "name": "\\ufffd"}\n{"id": 2, "name": "\ufffd"}\n',
                    encoding="utf-8")
    table, _ = read_all(make(path=str(path), primary_key="id"), "p")
    assert table["name"].to_pylist() == ["\ufffd", "\ufffd"]

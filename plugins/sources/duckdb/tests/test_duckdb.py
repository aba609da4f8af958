"""Tests of the ``duckdb`` source, driven the way the runtime drives it."""

from __future__ import annotations

import datetime as dt
import decimal
import inspect
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from conn.errors import CheckFailed, ConfigError
from conn.source import SourceState
from conn.testing.harness import read_all
from conn_source_duckdb.source import DuckDBSource

BIG_ROWS = 30_000


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""
        create table customers (
            id integer primary key,
            email varchar,
            name varchar,
            score double,
            signed_up date,
            updated_at timestamp,
            amount decimal(10, 2),
            active boolean,
            tags varchar[]
        )
    """)
    con.execute("""
        insert into customers values
        (1, 'ana@example.com', 'Ana Müller', 1.5, '2024-01-02', '2024-01-02 10:00:00',
         12.34, true, ['a', 'b']),
        (2, null, '東京 🚀', null, null, '2024-01-03 11:00:00', null, null, null),
        (3, 'zoe@example.com', '', -0.0, '2023-12-31', '2024-01-03 11:00:00', 0.01, false,
         [])
    """)
    con.execute("create table events (customer_id integer, kind varchar, "
                "primary key (customer_id, kind))")
    con.execute("create view active as select id, email from customers where active")
    con.execute("create schema crm")
    con.execute("create table crm.accounts (account_id bigint, owner varchar)")
    con.execute(f"create table big as select range::bigint as id, range % 97 as bucket, "
                f"'row ' || range::varchar as label from range({BIG_ROWS})")
    con.close()
    return path


def make(db: Path, **config: object) -> DuckDBSource:
    cfg = {"path": str(db), **config}
    DuckDBSource.validate_config(cfg)
    return DuckDBSource(cfg, instance="warehouse")


def test_discover_lists_tables_and_views_with_primary_keys(db: Path) -> None:
    with make(db) as src:
        streams = {s.name: s for s in src.discover()}
    assert set(streams) == {"customers", "events", "active", "crm.accounts", "big"}
    assert streams["customers"].primary_key == ("id",)
    assert streams["events"].primary_key == ("customer_id", "kind")
    assert streams["active"].primary_key == ()
    assert streams["crm.accounts"].primary_key == ()
    assert streams["active"].schema.names == ["id", "email"]


def test_schema_config_limits_streams(db: Path) -> None:
    with make(db, schema="crm") as src:
        assert [s.name for s in src.discover()] == ["accounts"]
        table, _ = read_all(src, "accounts")
    assert table.num_rows == 0
    assert table.schema.field("account_id").type == pa.int64()


def test_type_fidelity_nulls_and_unicode(db: Path) -> None:
    with make(db) as src:
        table, states = read_all(src, "customers")
    assert states == []
    schema = table.schema
    assert schema.field("id").type == pa.int32()
    assert schema.field("score").type == pa.float64()
    assert schema.field("signed_up").type == pa.date32()
    assert schema.field("updated_at").type == pa.timestamp("us")
    assert schema.field("amount").type == pa.decimal128(10, 2)
    assert schema.field("active").type == pa.bool_()
    assert pa.types.is_list(schema.field("tags").type)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows[1]["name"] == "Ana Müller"
    assert rows[1]["amount"] == decimal.Decimal("12.34")
    assert rows[1]["signed_up"] == dt.date(2024, 1, 2)
    assert rows[1]["tags"] == ["a", "b"]
    assert rows[2]["name"] == "東京 🚀"
    assert rows[2]["email"] is None and rows[2]["score"] is None and rows[2]["tags"] is None
    assert rows[3]["name"] == "" and rows[3]["tags"] == []


def test_large_table_streams_in_bounded_batches(db: Path) -> None:
    with make(db) as src:
        stream = src.stream("big")
        gen = src.read_batches(stream, None, 1000)
        assert inspect.isgenerator(gen)  # nothing is read before iteration
        first = next(gen)
        assert isinstance(first, pa.RecordBatch) and first.num_rows <= 1000
        gen.close()
        sizes, total, ids = [], 0, []
        for item in src.read(stream, None, 1000):
            assert isinstance(item, pa.RecordBatch)
            sizes.append(item.num_rows)
            total += item.num_rows
            ids.append(item.column("id"))
    assert max(sizes) <= 1000
    assert len(sizes) >= BIG_ROWS // 1000
    assert total == BIG_ROWS
    assert len(pa.chunked_array(ids).unique()) == BIG_ROWS


def test_query_stream(db: Path) -> None:
    with make(db) as src:
        info = src.stream(query="select id, upper(email) as email from customers "
                                "where email is not null order by id;", primary_key=("id",))
        assert info.primary_key == ("id",)
        assert info.schema.names == ["id", "email"]
        rows = [r for b in src.read(info) for r in b.to_pylist()]
    assert rows == [{"id": 1, "email": "ANA@EXAMPLE.COM"}, {"id": 3, "email": "ZOE@EXAMPLE.COM"}]


def test_bad_query_is_a_config_error_naming_the_file(db: Path) -> None:
    with make(db) as src, pytest.raises(ConfigError, match=r"warehouse\.duckdb"):
        src.stream(query="select nope from customers", primary_key=())


def test_query_primary_key_must_be_a_column(db: Path) -> None:
    with make(db) as src, pytest.raises(ConfigError, match="primary key"):
        src.stream(query="select id from customers", primary_key=("email",))


def test_named_query_stream_and_overrides(db: Path) -> None:
    streams = {
        "emails": {"query": "select id, email from customers", "primary_key": ["id"]},
        "active": {"primary_key": ["id"]},
    }
    with make(db, streams=streams) as src:
        found = {s.name: s for s in src.discover()}
        assert found["emails"].primary_key == ("id",)
        assert found["active"].primary_key == ("id",)
        table, _ = read_all(src, "emails")
    assert table.num_rows == 3


def test_override_of_unknown_column_or_stream_names_the_config_path(db: Path) -> None:
    with make(db, streams={"customers": {"cursor": "nope"}}) as src, \
            pytest.raises(ConfigError) as err:
        src.discover()
    assert err.value.path == "config.streams.customers.cursor"
    with make(db, streams={"ghost": {"primary_key": ["id"]}}) as src, \
            pytest.raises(ConfigError, match="ghost"):
        src.discover()


def test_unknown_stream_lists_known_ones(db: Path) -> None:
    with make(db) as src, pytest.raises(ConfigError, match="customers"):
        src.stream("nope")


def test_incremental_read_by_cursor(db: Path) -> None:
    with make(db, streams={"customers": {"cursor": "updated_at"}}) as src:
        table, states = read_all(src, "customers")
    assert table.num_rows == 3
    assert states == ["2024-01-03T11:00:00"]
    with make(db, streams={"customers": {"cursor": "updated_at"}}) as src:
        table, again = read_all(src, "customers", state=states[-1])
    assert table.num_rows == 0 and again == []

    con = duckdb.connect(str(db))
    con.execute("insert into customers (id, name, updated_at) values "
                "(4, 'new', '2024-02-01 00:00:00'), (5, 'old', '2023-01-01 00:00:00')")
    con.close()
    with make(db, streams={"customers": {"cursor": "updated_at"}}) as src:
        table, states = read_all(src, "customers", state=states[-1])
    assert table.column("id").to_pylist() == [4]
    assert states == ["2024-02-01T00:00:00"]


def test_bookmarks_never_split_equal_cursor_values(tmp_path: Path) -> None:
    path = tmp_path / "ties.duckdb"
    con = duckdb.connect(str(path))
    # 40 rows, cursor values 0..9 each four times; a NULL cursor too.
    con.execute("create table t as select range as id, range // 4 as v from range(40)")
    con.execute("insert into t values (100, null)")
    con.close()
    with make(path, streams={"t": {"cursor": "v"}}) as src:
        items = list(src.read(src.stream("t"), None, 6))
    seen: list[int | None] = []
    for pos, item in enumerate(items):
        if isinstance(item, SourceState):
            later = [r["v"] for b in items[pos + 1:] if isinstance(b, pa.RecordBatch)
                     for r in b.to_pylist()]
            assert all(v > item.value for v in later), (item.value, later)
            assert item.value in seen
        else:
            assert item.num_rows <= 6
            seen.extend(item.column("v").to_pylist())
    assert seen[0] is None  # NULL cursors come first
    assert len(seen) == 41
    assert isinstance(items[-1], SourceState) and items[-1].value == 9
    # Resuming from any bookmark yields exactly the rows after it.
    with make(path, streams={"t": {"cursor": "v"}}) as src:
        table, _ = read_all(src, "t", state=4)
    assert sorted(table.column("v").to_pylist()) == [v for v in range(5, 10) for _ in range(4)]


def test_check_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.duckdb"
    with make(missing) as src, pytest.raises(CheckFailed, match=re.escape(str(missing))):
        src.check()


def test_check_not_a_duckdb_file_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_text("this is not a database")
    with make(bad) as src, pytest.raises(CheckFailed, match=r"bad\.duckdb"):
        src.check()


def test_check_unknown_schema(db: Path) -> None:
    with make(db, schema="nope") as src, pytest.raises(CheckFailed, match="nope"):
        src.check()


def test_check_ok_and_read_only_by_default(db: Path) -> None:
    with make(db) as src:
        src.check()
        with pytest.raises(duckdb.Error):
            src._con().execute("create table x (a int)")


def test_relative_path_resolves_against_base_dir_or_cwd(
        db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with make(Path("warehouse.duckdb"), base_dir=str(db.parent)) as src:
        assert src.path == db
        src.check()
    monkeypatch.chdir(db.parent)
    with make(Path("warehouse.duckdb")) as src:
        assert src.path == db
        src.check()


@pytest.mark.parametrize("config, where", [
    ({}, "path"),
    ({"path": ""}, "path"),
    ({"path": "x.duckdb", "read_only": "yes"}, "read_only"),
    ({"path": "x.duckdb", "tables": ["a"]}, "tables"),
    ({"path": "x.duckdb", "streams": {"a": {"cursor": 3}}}, "cursor"),
    ({"path": "x.duckdb", "streams": {"a": {"sql": "select 1"}}}, "sql"),
])
def test_config_schema_rejects_bad_config(config: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        DuckDBSource.validate_config(config)


def test_discovered_through_entry_point() -> None:
    from conn.plugins import Registry

    assert Registry(autoload=True).source_class("duckdb") is DuckDBSource


def test_entry_point_module_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from conn.plugins import Registry\n"
        "cls = Registry(autoload=True).source_class('duckdb')\n"
        "assert cls.__name__ == 'DuckDBSource'\n"
        "heavy = [m for m in ('duckdb', 'pyarrow') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "duckdb" not in out.stdout.split(",")

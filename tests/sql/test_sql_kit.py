"""conn.sql: the database-independent helpers SQL plugins share."""

from __future__ import annotations

import sqlite3

import pyarrow as pa
import pytest
from conn.destination import Rejection
from conn.errors import ConfigError
from conn.source import SourceState
from conn.sql import (
    check_column_types,
    check_query_key,
    destination_properties,
    dml,
    incremental_query,
    object_fields,
    object_identifiers,
    quote_ident,
    replay_row_by_row,
    require_unique_key,
    select_tables,
    set_columns,
    stream_options,
    table_options,
    with_bookmarks,
)


def test_quote_ident():
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident("a`b", "`") == "`a``b`"
    with pytest.raises(ConfigError, match="NUL"):
        quote_ident("a\x00")


def test_settings():
    props = destination_properties(10, {"columns": {"type": "object"}})
    assert props["batch_size"]["default"] == 10
    assert set(props["tables"]["additionalProperties"]["properties"]) == {
        "key", "create_table", "evolve", "columns"}
    config = {"evolve": True, "tables": {"t": {"create_table": True}}}
    assert table_options(config, "t") == {"create_table": True, "evolve": True}
    assert table_options({}, "u") == {"create_table": False, "evolve": False}


def test_stream_selection():
    assert select_tables(["a", "b"], None, instance="s") == ["a", "b"]
    assert select_tables(["a", "b"], ["b"], instance="s") == ["b"]
    with pytest.raises(ConfigError, match=r"no table\(s\) \['c'\] in x"):
        select_tables(["a"], ["c"], instance="s", where=" in x")
    config = {"streams": {"t": {"cursor": "u", "primary_key": ["k"]}}}
    assert stream_options(config, "t", ["u", "k"], ("id",)) == ("u", ("k",))
    assert stream_options({}, "t", [], ("id",)) == (None, ("id",))
    with pytest.raises(ConfigError, match="cursor column 'u' does not exist"):
        stream_options(config, "t", ["k"], ())
    with pytest.raises(ConfigError, match="for the primary key"):
        check_query_key(["k"], ["a"])


def test_incremental_query():
    assert incremental_query("SELECT 1", None, 5, "?") == ("SELECT 1", ())
    assert incremental_query("S", '"c"', None, "?") == ('S ORDER BY "c"', ())
    assert incremental_query("S", '"c"', 5, "%s") == ('S WHERE "c" > %s ORDER BY "c"', (5,))


def test_bookmarks_follow_the_last_value_no_later_row_shares():
    schema = pa.schema([("c", pa.int64())])
    batches = [pa.record_batch([pa.array(v, pa.int64())], schema=schema)
               for v in ([1, 2], [2, 3], [4, 5])]
    out = list(with_bookmarks(iter(batches), "c"))
    states = [(i, o.value) for i, o in enumerate(out) if isinstance(o, SourceState)]
    assert states == [(2, 3), (4, 5)]  # none after [1, 2]: the next batch starts at 2
    assert list(with_bookmarks(iter(batches[:1]), "c", lambda v: f"<{v}>"))[-1] == \
        SourceState("<2>")


def test_objects_and_checks():
    assert object_identifiers("k", ["id", "k"], ["a"]) == ["k", "id"]
    assert object_identifiers(None, [], ["a", "b"]) == ["a", "b"]
    assert object_fields({"a": {}}, ["k"], open_=0) == {
        "type": "object", "properties": {"a": {}, "k": {}}, "additionalProperties": False}
    fields = [pa.field("n", pa.int64()), pa.field("s", pa.string()), pa.field("x", pa.int8())]

    def family(t: str) -> str:
        return {"int": "num", "blob": "bin"}.get(t, "text")

    def arrow_family(f: pa.Field) -> str:
        return "num" if pa.types.is_integer(f.type) else "text"

    check_column_types("t", fields, {"n": "int", "s": "blob"}, family, arrow_family)
    with pytest.raises(ConfigError, match=r"type mismatch: 'n' \(int64 into blob\)"):
        check_column_types("t", fields, {"n": "blob"}, family, arrow_family)
    check_column_types("t", fields, {"n": "blob"}, family, arrow_family,
                       compatible=[{"num", "bin"}])
    with pytest.raises(ConfigError, match=r"upsert on 'k' needs .* on it!"):
        require_unique_key("t", "k", ["id"], hint="!")


def test_dml():
    q = quote_ident
    assert set_columns(["k"], "k") == ["k"]
    assert dml("delete", '"t"', ["k"], "k", quote=q, mark="?") == \
        'DELETE FROM "t" WHERE "k" = ?'
    assert dml("update", '"t"', ["k", "a"], "k", quote=q, mark="%s") == \
        'UPDATE "t" SET "a" = %s WHERE "k" = %s'
    assert dml("insert", '"t"', ["k", "a"], "k", quote=q, mark="?") == \
        'INSERT INTO "t" ("k", "a") VALUES (?, ?)'


def test_replay_row_by_row_rejects_only_the_bad_rows():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    rows = [(1, "a"), (2, None), (3, "c")]
    conn.execute("BEGIN")

    def write_row(idx: int) -> list[Rejection]:
        conn.execute("INSERT INTO t VALUES (?, ?)", rows[idx])
        return [Rejection(idx, "note")] if idx == 2 else []

    def reject(idx: int, exc: Exception) -> Rejection | None:
        return Rejection(idx, str(exc)) if isinstance(exc, sqlite3.IntegrityError) else None

    rejected = replay_row_by_row(conn.execute, len(rows), write_row, reject,
                                 release_after_rollback=True)
    conn.execute("COMMIT")
    assert [(r.index, r.reason.split(":")[0]) for r in rejected] == [
        (1, "NOT NULL constraint failed"), (2, "note")]
    assert conn.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (3,)]

    conn.execute("BEGIN")
    with pytest.raises(sqlite3.IntegrityError):
        replay_row_by_row(conn.execute, 1, write_row, lambda i, e: None)
    conn.execute("ROLLBACK")


def test_lazy_connection_opens_once_and_drops_quietly():
    from conn.sql import LazyConnection

    class Broken:
        closed = 0

        def close(self) -> None:
            Broken.closed += 1
            raise RuntimeError("already gone")

    class Holder(LazyConnection):
        opened = 0

        def _open_connection(self) -> Broken:
            self.opened += 1
            return Broken()

    h = Holder()
    assert h._connection() is h._connection() and h.opened == 1
    h.close()
    h.close()
    assert Broken.closed == 1 and h._conn is None
    h._connection()
    assert h.opened == 2


def test_lazy_connection_requires_open_connection():
    """A SQL connector that forgets ``_open_connection`` cannot be made (the mixin is an
    ABC, so the runtime classes see its duty)."""
    from conn.source import Source
    from conn.sql import LazyConnection

    class Forgot(LazyConnection, Source):
        def discover(self):
            return []

        def read_batches(self, stream, state, batch_rows):
            return iter(())

    with pytest.raises(TypeError, match="_open_connection"):
        Forgot({})


class _SqliteSource:
    """A minimal SQL source on an in-memory SQLite database, for the mixin's queries."""

    @staticmethod
    def make(path: str):
        from conn.source import Source
        from conn.sql import LazyConnection

        class Src(LazyConnection, Source):
            name = "lite"

            def _open_connection(self):
                return sqlite3.connect(path, isolation_level=None)

            def discover(self):
                return []

            def read_batches(self, stream, state, batch_rows):
                return iter(())

        return Src({}, instance="lite")


def test_lazy_connection_fetchall_and_check(tmp_path):
    from conn.errors import CheckFailed, ConnError

    src = _SqliteSource.make(str(tmp_path / "db.sqlite"))
    assert src._fetchall("SELECT ? + 1", (41,)) == [(42,)]
    assert src._fetchall("CREATE TABLE t (k INTEGER)") == []
    src.check()
    with pytest.raises(ConnError, match=r"^source 'lite': no such table: nope"):
        src._fetchall("SELECT * FROM nope")
    assert src._conn is None  # dropped: the next use reconnects
    src.check_sql = "SELECT * FROM nope"
    with pytest.raises(CheckFailed, match="no such table"):
        src.check()
    src.close()


def _prepare(tables: dict, operation: str = "upsert", *, options=None, schema=None,
             families=None):
    """prepare_table over an in-memory catalog; returns (result, calls)."""
    from conn.sql import Table, prepare_table

    calls: list = []
    schema = schema or pa.schema([("id", pa.int64()), ("email", pa.string())])

    def describe(fresh: bool):
        calls.append(("describe", fresh))
        t = tables.get("t")
        return None if t is None else Table(dict(t["columns"]), t.get("unique", ()))

    def create(s, primary):
        calls.append(("create", s.names, primary))
        tables["t"] = {"columns": {f.name: str(f.type) for f in s}, "unique": [primary]}

    def add_columns(fields):
        calls.append(("add", [f.name for f in fields]))
        tables["t"]["columns"].update({f.name: str(f.type) for f in fields})

    result = prepare_table("t", schema, "id", operation,
                           options={"create_table": False, "evolve": False, **(options or {})},
                           instance="db", describe=describe, create=create,
                           add_columns=add_columns, families=families)
    return result, calls


def test_prepare_table_creates_evolves_checks_and_requires_a_unique_key():
    # a missing table: nothing to delete; an error without create_table; else created
    assert _prepare({}, "delete") == (None, [("describe", False), ("describe", True)])
    with pytest.raises(ConfigError, match="table 't' does not exist; create it or set "
                                          "create_table: true for destination 'db'"):
        _prepare({})
    tables: dict = {}
    table, calls = _prepare(tables, options={"create_table": True, "key": "id"})
    assert ("create", ["id", "email"], "id") in calls and set(table.columns) == {"id", "email"}
    with pytest.raises(ConfigError, match="batch has no key column 'other'"):
        _prepare({}, options={"create_table": True, "key": "other"})
    # missing columns: an error without evolve, added with it; a delete needs the key only
    tables = {"t": {"columns": {"id": "int64"}, "unique": ["id"]}}
    with pytest.raises(ConfigError, match=r"has no column\(s\) 'email'.*evolve: true"):
        _prepare(tables)
    assert _prepare(tables, "delete")[0] is not None
    table, calls = _prepare(tables, options={"evolve": True})
    assert ("add", ["email"]) in calls and "email" in table.columns
    with pytest.raises(ConfigError, match="no key column 'id' to delete by"):
        _prepare({"t": {"columns": {"email": "string"}}}, "delete")
    # upserts need a unique key on the match key; updates do not
    keyless = {"t": {"columns": {"id": "int64", "email": "string"}}}
    with pytest.raises(ConfigError, match="upsert on 'id' needs a primary key"):
        _prepare(keyless)
    assert _prepare(keyless, "update")[0] is not None
    # type families: text goes anywhere, a number into a date column does not
    fam = (lambda col: {"date": "time", "int64": "num"}.get(col, "text"),
           lambda f: "num" if pa.types.is_integer(f.type) else "text")
    assert _prepare({"t": {"columns": {"id": "int64", "email": "date"},
                           "unique": ["id"]}}, families=fam)[0] is not None
    with pytest.raises(ConfigError, match=r"column type mismatch: 'id' \(int64 into date\)"):
        _prepare({"t": {"columns": {"id": "date", "email": "string"}, "unique": ["id"]}},
                 families=fam)


def test_column_type_from_rules():
    from conn.sql import SQL_TYPE_KEY, column_type

    rules = [(pa.types.is_integer, "BIGINT"),
             (pa.types.is_decimal, lambda f: f"DECIMAL({f.type.precision},{f.type.scale})"),
             (pa.types.is_string, "TEXT")]
    assert column_type(pa.field("n", pa.int8()), rules) == "BIGINT"
    assert column_type(pa.field("d", pa.decimal128(12, 2)), rules) == "DECIMAL(12,2)"
    assert column_type(pa.field("s", pa.dictionary(pa.int8(), pa.string())), rules) == "TEXT"
    tagged = pa.field("j", pa.string(), metadata={SQL_TYPE_KEY: b"json"})
    assert column_type(tagged, rules, tags={"json": "JSON"}) == "JSON"
    assert column_type(tagged, rules) == "TEXT"
    with pytest.raises(ConfigError, match="column 'b': no MariaDB type for Arrow type bool"):
        column_type(pa.field("b", pa.bool_()), rules, dialect="MariaDB")

"""Every state backend keeps what ``conn forget`` needs (docs/privacy.md): the salt, the
suppression list, pending erasures and the hash-chained ledger; it finds a subject by key
or match value (e-mail addresses trimmed and lowercased) and purges it. Older state
formats are migrated."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pytest
from conn.privacy import receipts
from conn.state.contracts import LEDGER_ROOT

from tests.conftest import unavailable
from tests.state.conftest import PG_URL, make_store, pg_available


@pytest.fixture(params=["memory", "duckdb", pytest.param("postgres", marks=pytest.mark.services)])
def store(request, tmp_path) -> Iterator[object]:
    kind = request.param
    schema = f"conn_privacy_{uuid.uuid4().hex[:10]}"
    if kind == "postgres" and not pg_available():
        unavailable("PostgreSQL not reachable at 127.0.0.1:5432")
    s = make_store(kind, tmp_path, schema)
    yield s
    s.close()
    if kind == "postgres":
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _deliver(store, sync: str, keys: list[str], match: list[str]) -> None:
    with store.open_sync(sync, "run1") as st:
        st.plan(pa.array(keys), pa.RecordBatch.from_pydict({"email": match}))
        n = len(keys)
        st.commit(pa.array(keys), pa.array(range(1, n + 1), pa.uint64()), pa.array(match),
                  pa.array([True] * n), [])


def test_salt_is_created_once_and_kept(store):
    privacy = store.privacy()
    assert privacy.salt(create=False) is None
    salt = privacy.salt()
    assert len(salt) == 32
    assert privacy.salt() == salt == privacy.salt(create=False)


def test_suppression_list_keeps_each_digest_once(store):
    privacy = store.privacy()
    privacy.suppress(["a" * 64, "b" * 64], "r1")
    privacy.suppress(["b" * 64, "c" * 64], "r2")
    assert sorted(privacy.suppressed().to_pylist()) == ["a" * 64, "b" * 64, "c" * 64]


def test_find_by_key_or_match_value_and_purge(store):
    _deliver(store, "s", ["1", "2", "3"], ["Ana@X.org", "bo@x.org", "cy@x.org"])
    privacy = store.privacy()
    by_mail = privacy.find("s", ["ana@x.org"], ["ana@x.org"])
    assert [(r["key"], r["match_value"], r["match_type"]) for r in by_mail] == [
        ("1", "Ana@X.org", "string")]
    assert by_mail[0]["hash"] == 1
    assert [r["key"] for r in privacy.find("s", ["2"], [])] == ["2"]
    assert privacy.find("other", ["2"], []) == []
    privacy.purge("s", ["1", "2"], ["ana@x.org"])
    assert privacy.find("s", ["1", "2", "ana@x.org"], ["ana@x.org", "bo@x.org"]) == []
    assert [r["key"] for r in privacy.find("s", ["3"], [])] == ["3"]
    assert store.delivered("s", ["1", "2", "3"])[0]["key"] == "3"


def test_pending_erasures_until_settled(store):
    privacy = store.privacy()
    rows = [{"id": f"p{i}", "receipt_id": "r", "target": 0, "sync": "s",
             "match_value": f"m{i}", "match_type": "string", "key_digest": "d",
             "hash": 2**64 - 1 - i} for i in range(3)]
    privacy.add_pending(rows)
    got = privacy.pending()
    assert [r["id"] for r in got] == ["p0", "p1", "p2"]
    assert [r["hash"] for r in got] == [2**64 - 1, 2**64 - 2, 2**64 - 3]
    privacy.settle(["p0", "p2"])
    assert [r["id"] for r in privacy.pending()] == ["p1"]


def test_ledger_chains_every_entry(store):
    privacy = store.privacy()
    first = privacy.append("r1", receipts.body({"kind": "erasure", "targets": []}))
    second = privacy.append("r1", receipts.body({"kind": "attempt", "target": 0}))
    assert first["prev"] == LEDGER_ROOT and second["prev"] == first["hash"]
    entries = privacy.ledger()
    assert [e["seq"] for e in entries] == [1, 2]
    assert receipts.verify(entries) == []


def test_history_is_scrubbed(store):
    store.record_run("s", "run1", {"status": "rejected", "rejection_reasons": {
        "invalid e-mail ana@x.org": 1}, "rows_read": 42})
    store.privacy().scrub_history(["ana@x.org"], lambda s: s.replace("ana@x.org", "[erased]"))
    [run] = store.runs("s")
    assert run["report"]["rejection_reasons"] == {"invalid e-mail [erased]": 1}
    assert run["report"]["rows_read"] == 42


def test_a_format_4_run_history_file_is_migrated(tmp_path):
    from conn.state.backends.duckdb import migrations

    folder = tmp_path / ".conn" / "state"
    folder.mkdir(parents=True)
    con = duckdb.connect(str(folder / "runs.duckdb"))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute(migrations.RUNS_TABLES_V4)
    migrations.write_meta(con, {"app_id": migrations.APP_ID, "format_version": 4,
                                "kind": "runs"})
    con.execute("INSERT INTO runs (sync, run_id, status, report) VALUES "
                "('s', 'old', 'ok', '{}')")
    con.close()
    store = make_store("duckdb", tmp_path)
    privacy = store.privacy()
    privacy.suppress(["d" * 64], "r")
    assert privacy.suppressed().to_pylist() == ["d" * 64]
    assert [r["run_id"] for r in store.runs()] == ["old"]
    con = duckdb.connect(str(folder / "runs.duckdb"), read_only=True)
    assert migrations.read_meta(con)["format_version"] == str(migrations.FORMAT_VERSION)
    con.close()


@contextlib.contextmanager
def _old_pg_schema(version: int, *alter: str) -> Iterator[str]:
    """A PostgreSQL state schema stamped with format ``version`` (today's tables, then
    the ``alter`` statements, ``{s}`` standing for the schema), dropped afterwards."""
    if not pg_available():
        unavailable("PostgreSQL not reachable at 127.0.0.1:5432")
    import psycopg
    from conn.state.backends import postgres

    schema = f"conn_old_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
            c.execute(f"CREATE TABLE {schema}.meta (key text PRIMARY KEY, value text)")
            c.execute(f"INSERT INTO {schema}.meta VALUES ('app_id', 'conn-state'), "
                      f"('format_version', '{version}')")
            c.execute(postgres.DDL.format(s=schema))
            for statement in alter:
                c.execute(statement.format(s=schema))
        yield schema
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.services
def test_a_format_2_postgres_schema_is_migrated():
    import psycopg
    from conn.state.backends import postgres

    with _old_pg_schema(2) as schema:
        store = make_store("postgres", None, schema)
        store.privacy().suppress(["e" * 64], "r")
        assert store.privacy().suppressed().to_pylist() == ["e" * 64]
        with psycopg.connect(PG_URL) as c:
            version = c.execute(f"SELECT value FROM {schema}.meta WHERE key = "
                                "'format_version'").fetchall()[0][0]
        assert version == str(postgres.FORMAT_VERSION) == "4"
        store.close()


def test_purge_forgets_since_when_a_key_was_delivered(tmp_path):
    """The access report's "first delivered" time (DuckDB's ``first_acked`` table, kept
    when a later run replaces a record) is about the person: a purge removes it too."""
    s = make_store("duckdb", tmp_path, "unused")
    try:
        for run, hashes in (("run1", [1, 2]), ("run2", [11, 12])):
            with s.open_sync("s", run) as st:
                st.plan(pa.array(["1", "2"]), pa.RecordBatch.from_pydict(
                    {"email": ["a@x.org", "b@x.org"]}))
                st.commit(pa.array(["1", "2"]), pa.array(hashes, pa.uint64()),
                          pa.array(["a@x.org", "b@x.org"]), pa.array([True, True]), [])
        s.close()
        s = make_store("duckdb", tmp_path, "unused")
        path = s.sync_path("s")

        def firsts() -> int:
            con = duckdb.connect(str(path), read_only=True)
            try:
                return con.execute("SELECT count(*) FROM first_acked").fetchall()[0][0]
            finally:
                con.close()

        before = firsts()
        assert before == 2, "both keys were replaced in run2: both keep a first delivery"
        s.privacy().purge("s", ["1"], ["a@x.org"])
        assert firsts() == 1
    finally:
        s.close()


def test_purge_drops_rejections_whose_excerpt_quotes_the_person(store):
    """An excerpt of the vendor exchange holds the row as sent: purging a person's texts
    drops the rejections whose reason or excerpt quotes them, whatever their key."""
    with store.open_sync("s", "run1") as st:
        keys = pa.array(["7", "8", "9"])
        st.commit(keys, pa.nulls(3, pa.uint64()), pa.nulls(3, pa.string()),
                  pa.array([False] * 3), [(0, "HTTP 400"), (1, "HTTP 400"), (2, "HTTP 400")],
                  {0: '{"request": "{\\"email\\":\\"ana@x.org\\"}"}',
                   1: '{"request": "{\\"email\\":\\"bo@x.org\\"}"}'})
    store.privacy().purge("s", ["1"], ["ana@x.org"])
    assert sorted(r["key"] for r in store.rejections("s")) == ["8", "9"]


@pytest.mark.services
def test_a_format_3_postgres_schema_gains_the_excerpt_of_rejections():
    with _old_pg_schema(3, "ALTER TABLE {s}.rejections DROP COLUMN excerpt",
                        "INSERT INTO {s}.rejections (sync, kid, key, partition, reason) "
                        "VALUES ('s', 1, '1', 0, 'bad e-mail')") as schema:
        store = make_store("postgres", None, schema)
        try:
            assert [(r["key"], r["excerpt"]) for r in store.rejections("s")] == [("1", None)]
            with store.open_sync("s", "r1") as st:
                st.commit(pa.array(["2"]), pa.nulls(1, pa.uint64()), pa.nulls(1, pa.string()),
                          pa.array([False]), [(0, "locked")], {0: '{"status": 423}'})
            got = {r["key"]: r["excerpt"] for r in store.rejections("s")}
            assert got == {"1": None, "2": '{"status": 423}'}
        finally:
            store.close()

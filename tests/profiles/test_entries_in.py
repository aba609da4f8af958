"""The stored entries answer an incremental build's two questions (docs/profiles.md,
"Incremental builds"): the entries of some records, and the entries holding some
identifiers. The store keeps each identifier's hash and asks by it; what it answers
must be what a plain scan of the entries answers, whatever the hashes, and a store
written before the hash column answers the same."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from conn.profiles.engine import CHANGES, EntriesIn
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples

pairs = st.lists(st.tuples(st.integers(0, 20), st.sampled_from(
    ["email\x1fa@x.io", "email\x1fb@x.io", "phone\x1f+4912", "device_id\x1fd1", "é\x1f∑"])),
    max_size=40, unique=True)


def _rows(table: pa.Table) -> list[tuple[int, str]]:
    return sorted(zip(table.column("rkey").to_pylist(), table.column("ident").to_pylist(),
                      strict=True))


@settings(max_examples=examples(50), deadline=None)
@given(stored=pairs, asked=st.lists(st.sampled_from(
    ["email\x1fa@x.io", "phone\x1f+4912", "email\x1fnobody", "é\x1f∑"]), max_size=4),
    keys=st.lists(st.integers(0, 25), max_size=6), colliding=st.booleans())
def test_questions_match_a_plain_scan(stored: list, asked: list, keys: list,
                                      colliding: bool) -> None:
    con = duckdb.connect()
    table = pa.table({"rkey": pa.array([k for k, _ in stored], pa.uint64()),
                      "ident": pa.array([i for _, i in stored], pa.string())})
    con.register("_in", table)
    con.execute("CREATE TABLE hashed AS SELECT *, hash(ident) AS h FROM _in")
    con.execute("CREATE TABLE plain AS SELECT * FROM _in")
    if colliding:
        # Identifiers never asked for take the hash of one that is (a collision): the
        # answers must still hold only the identifiers asked for.
        con.execute("UPDATE hashed SET h = hash(?) WHERE ident IN (?, ?)",
                    ["email\x1fa@x.io", "email\x1fb@x.io", "device_id\x1fd1"])
    want_ids = pa.array(asked, pa.string())
    want_keys = pa.array(keys, pa.uint64())
    model_holding = sorted((k, i) for k, i in stored if i in set(asked))
    model_of = sorted((k, i) for k, i in stored if k in set(keys))
    for name in ("hashed", "plain"):
        entries = EntriesIn(con, name)
        assert entries.hashed == (name == "hashed")
        assert _rows(entries.holding(want_ids)) == model_holding
        assert _rows(entries.of(want_keys)) == model_of


def test_a_store_from_before_the_hash_column_is_still_updated(tmp_path) -> None:
    from conn.profiles import store

    st_ = store.ProfileStore(tmp_path / "profiles.duckdb")
    try:
        # The tables as a store written before the hash column holds them.
        st_.con.execute('CREATE TABLE "p.entries" (rkey UBIGINT, ident VARCHAR)')
        st_.con.execute('CREATE TABLE "p.golden" (profile_id VARCHAR)')
        st_.con.execute("""INSERT INTO "p.entries" VALUES (1, 'email\x1fa'), (2, 'email\x1fb')""")
        rows = pa.table({"rkey": pa.array([3], pa.uint64()), "ident": ["email\x1fc"]})
        st_.save("p", "b1", None, False, tables={
            "entries": store.Update("rkey", pa.array([1], pa.uint64()), rows)},
            changes=CHANGES.empty_table(), stats={})
        entries = EntriesIn(st_.con, '"p.entries"')
        assert not entries.hashed
        assert _rows(entries.holding(pa.array(["email\x1fc", "email\x1fa"]))) == \
            [(3, "email\x1fc")]
        # A store written now keeps the hashes, also through an update.
        st_.save("p", "b2", None, True, tables={"entries": rows},
                 changes=CHANGES.empty_table(), stats={})
        st_.save("p", "b3", None, False, tables={"entries": store.Update(
            "rkey", pa.array([], pa.uint64()), rows.set_column(0, "rkey", pa.array(
                [4], pa.uint64())))}, changes=CHANGES.empty_table(),
            stats={})
        entries = EntriesIn(st_.con, '"p.entries"')
        assert entries.hashed
        assert _rows(entries.holding(pa.array(["email\x1fc"]))) == [(3, "email\x1fc"),
                                                                    (4, "email\x1fc")]
        assert st_.con.sql('SELECT count(*) FROM "p.entries" WHERE h <> hash(ident)'
                           ).fetchall() == [(0,)]
    finally:
        st_.close()

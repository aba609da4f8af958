"""Probabilistic matchers (docs/profiles.md, "Probabilistic matchers"): a plugin's scored
pairs join profiles when they reach the threshold, in a round after every deterministic
rule, under the same limits.

The model: each kept pair is an identifier of a type of its own held by its two records,
stitched in a last round by the plain union-find of test_stitch_reference; the core's
path (threshold, entries, engine) must give the same profiles."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pyarrow as pa
import pytest
from conn.config.profiles import MatcherSpec
from conn.errors import ConfigError
from conn.hookspecs import hookimpl
from conn.plugins import Registry, reset_registry
from conn.profiles import engine
from conn.profiles.matching import PAIRS, Matcher, kept_entries
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cli_in_process import run_cli
from tests.conftest import examples
from tests.profiles.test_stitch_reference import partition, reference

SEP = engine.SEP


def run(records: list[set[tuple[int, int]]], pairs: list[tuple[int, int, float]],
        threshold: float, limit: int) -> list[int]:
    """Profiles through the core's path: types 0 (customer_id, limited) and 1 (email)
    from the records, the matcher's pairs thresholded into entries, one build."""
    names = ("customer_id", "email")
    rk = [r for r, ids in enumerate(records) for _ in ids]
    idents = [f"{names[t]}{SEP}{v}" for ids in records for t, v in sorted(ids)]
    det = pa.table({"rkey": pa.array(rk, pa.uint64()), "ident": pa.array(idents, pa.string())})
    spec = MatcherSpec("fake", threshold, ("name",))
    table = pa.table({"record_a": pa.array([p[0] for p in pairs], pa.uint64()),
                      "record_b": pa.array([p[1] for p in pairs], pa.uint64()),
                      "score": pa.array([p[2] for p in pairs], pa.float64())}, schema=PAIRS)
    entries = pa.concat_tables([det, kept_entries(table, spec)])
    rules = engine.Rules(types=(*names, spec.type_name),
                         rounds=((names[0],), (names[1],), (spec.type_name,)),
                         limits={"customer_id": limit})
    out = engine.build(entries, rules, engine.empty_previous())
    profile = dict(zip(out.records.column("rkey").to_pylist(),
                       out.records.column("profile").to_pylist(), strict=True))
    return [hash(profile[r]) if r in profile else -1 - r for r in range(len(records))]


def model(records: list[set[tuple[int, int]]], pairs: list[tuple[int, int, float]],
          threshold: float, limit: int) -> list[int]:
    """The docs' rule: a pair at or above the threshold is a value (type 2) its two
    records share, joined in a round after the deterministic ones."""
    recs = [set(ids) for ids in records]
    for k, (a, b, s) in enumerate(pairs):
        if s >= threshold and a != b:
            recs[a].add((2, k))
            recs[b].add((2, k))
    return reference(recs, [[0], [1], [2]], {0: limit}, {})


records_st = st.lists(st.sets(st.tuples(st.integers(0, 1), st.integers(0, 4)),
                              min_size=1, max_size=2), min_size=2, max_size=25)


@pytest.mark.slow
@settings(max_examples=examples(200), deadline=None)
@given(data=st.data(), threshold=st.floats(0, 1), limit=st.integers(1, 2))
def test_matched_pairs_equal_the_model(data: st.DataObject, threshold: float,
                                       limit: int) -> None:
    records = data.draw(records_st)
    n = len(records)
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1),
                                         st.floats(0, 1)), max_size=20))
    assert partition(run(records, pairs, threshold, limit)) == \
        partition(model(records, pairs, threshold, limit))


def test_threshold_and_the_customer_id_limit() -> None:
    # r0 and r1 are two customers; r2, r3 have only e-mails.
    records = [{(0, 1)}, {(0, 2)}, {(1, 7)}, {(1, 8)}]
    pairs = [(0, 1, 0.99),  # would put two customer_ids in one profile: refused
             (2, 3, 0.95),  # kept
             (0, 2, 0.50)]  # below the threshold
    assert partition(run(records, pairs, 0.9, 1)) == {
        frozenset({0}), frozenset({1}), frozenset({2, 3})}
    # With a lower threshold r0-r2 is kept too; the round's component {r0, r1, r2, r3}
    # would hold two customer_ids, so it is refused as a whole.
    assert partition(run(records, pairs, 0.4, 1)) == {
        frozenset({0}), frozenset({1}), frozenset({2}), frozenset({3})}


def test_kept_entries_drop_self_pairs_repeats_and_nulls() -> None:
    spec = MatcherSpec("fake", 0.5, ("name",), index=2)
    table = pa.table({"record_a": pa.array([5, 5, 7, 9], pa.uint64()),
                      "record_b": pa.array([7, 5, 5, 1], pa.uint64()),
                      "score": pa.array([0.6, 1.0, 0.7, None], pa.float64())})
    got = kept_entries(table, spec).sort_by("rkey").to_pylist()
    assert got == [{"rkey": 5, "ident": f"~match2{SEP}5:7"},
                   {"rkey": 7, "ident": f"~match2{SEP}5:7"}]


# --- through conn.yml and the real CLI, with a fake matcher registered by hand -------------

pytest.importorskip("conn_source_duckdb")

PROJECT = """\
version: 1
sources:
  warehouse: {type: duckdb, config: {path: warehouse.duckdb}}
profiles:
  people:
    edges:
      crm:
        source: warehouse
        stream: contacts
        identifiers: {id: customer_id, email: email}
    fields:
      name: {rule: max}
    matchers:
      - {plugin: initials, threshold: 0.9, columns: [name], blocking: [name]}
"""


class Initials(Matcher):
    """Scores pairs of records whose names share their first letter: 1.0 when the
    names are equal, else 0.95 (same first letter) or 0.1. A per-row loop is fine in a
    test double; real matchers work on whole tables."""

    options_schema = {"type": "object", "properties": {"scale": {"type": "number"}},
                      "additionalProperties": False}

    def pairs(self, records: pa.Table) -> pa.Table:
        rows = records.to_pylist()
        out = []
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                na, nb = a["name"] or "", b["name"] or ""
                s = 1.0 if na == nb else 0.95 if na[:1] == nb[:1] else 0.1
                out.append((a["rkey"], b["rkey"], s))
        return pa.table({"record_a": pa.array([o[0] for o in out], pa.uint64()),
                         "record_b": pa.array([o[1] for o in out], pa.uint64()),
                         "score": pa.array([o[2] for o in out], pa.float64())})


def _plugin() -> types.ModuleType:
    mod = types.ModuleType("fake_matcher_plugin")

    @hookimpl
    def register_matchers(register):  # type: ignore[no-untyped-def]
        register("initials", Initials)

    mod.register_matchers = register_matchers  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import duckdb

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("CREATE TABLE contacts (id VARCHAR, email VARCHAR, name VARCHAR)")
    con.executemany("INSERT INTO contacts VALUES (?, ?, ?)", [
        ("c1", "ann@a.com", "Ann"), (None, "ann@b.com", "Anna"),   # 0.95: joined
        ("c2", "amy@c.com", "Amy"),    # 'A' too, but a second customer_id: refused
        (None, "bob@d.com", "Bob"), (None, "carl@e.com", "Carl"),  # 0.1: apart
    ])
    con.close()
    (tmp_path / "conn.yml").write_text(PROJECT)
    monkeypatch.chdir(tmp_path)
    reg = Registry()
    reg.add_module(_plugin())
    reset_registry(reg)
    yield tmp_path
    reset_registry(Registry(autoload=False))


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str]:
    code, out, err = run_cli(monkeypatch, capsys, *args)
    return code, out + err


@pytest.mark.slow
def test_cli_build_with_a_fake_matcher(project: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    assert code == 0, out
    (b,) = json.loads(out)["builds"]
    # Ann, Anna and Amy pair above 0.9 (3 pairs); the round's component would hold c1
    # and c2, so it is refused as a whole: 5 profiles, as without the matcher.
    assert (b["records"], b["profiles"], b["matched_pairs"]) == (5, 5, 3)
    # Refused pairs joined no records of one profile: show lists none of them.
    code, out = cli(monkeypatch, capsys, "profiles", "show", "ann@b.com", "--json")
    (p,) = json.loads(out)["profiles"]
    assert p["matches"] == []
    # Amy without a customer_id: the three join.
    import duckdb

    con = duckdb.connect("warehouse.duckdb")
    con.execute("UPDATE contacts SET id = NULL WHERE id = 'c2'")
    con.close()
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    (b,) = json.loads(out)["builds"]
    assert (b["profiles"], b["full"]) == (3, True)
    code, out = cli(monkeypatch, capsys, "profiles", "show", "ann@b.com", "--json")
    (p,) = json.loads(out)["profiles"]
    ids = {(i["type"], i["value"]) for i in p["identities"]}
    assert ids == {("customer_id", "c1"), ("email", "ann@a.com"), ("email", "ann@b.com"),
                   ("email", "amy@c.com")}
    # The pairs that joined them, with their scores and the matcher entry's type.
    assert sorted((m["score"], m["matcher"]) for m in p["matches"]) == \
        [(0.95, "~match0")] * 3
    assert all(m["record_a"] < m["record_b"] for m in p["matches"])
    code, out = cli(monkeypatch, capsys, "profiles", "show", "ann@b.com")
    assert code == 0 and "0.95\t~match0" in out, out  # piped: tab-separated rows
    # The matcher removed: the next build re-stitches everything (the stored entries
    # hold no pair, so an incremental build would keep the matched profiles), and they
    # part again.
    (project / "conn.yml").write_text(PROJECT.split("    matchers:")[0])
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    (b,) = json.loads(out)["builds"]
    assert (b["profiles"], b["full"], "matched_pairs" in b) == (5, True, False)
    code, out = cli(monkeypatch, capsys, "profiles", "show", "ann@b.com", "--json")
    assert json.loads(out)["profiles"][0]["matches"] == []


def test_unknown_matcher_plugin_names_file_path_and_package(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (project / "conn.yml").write_text(PROJECT.replace("plugin: initials", "plugin: splink"))
    monkeypatch.setenv("CONN_PLUGINS_BLOCK", "splink")
    code, out = cli(monkeypatch, capsys, "profiles", "build")
    assert code != 0
    assert "profiles.people.matchers[0].plugin" in out and "conn-matcher-splink" in out


def test_bad_matcher_config_names_the_path(project: Path) -> None:
    from conn.config.load import load_project
    from conn.config.profiles import profile_sets

    bad = PROJECT.replace("blocking: [name]", "blocking: [email]")
    (project / "conn.yml").write_text(bad)
    with pytest.raises(ConfigError) as e:
        profile_sets(load_project(project / "conn.yml"))
    assert e.value.path == "profiles.people.matchers[0].blocking[0]"
    (project / "conn.yml").write_text(PROJECT.replace("threshold: 0.9", "threshold: 2"))
    with pytest.raises(ConfigError) as e:
        load_project(project / "conn.yml")
    assert "profiles.people.matchers[0].threshold" in str(e.value)
    (project / "conn.yml").write_text(PROJECT.replace("blocking: [name]",
                                                      "options: {scale: x}"))
    code_out = _build_error(project)
    assert "profiles.people.matchers[0].options.scale" in code_out


def _build_error(project: Path) -> str:
    from conn.config.load import load_project
    from conn.plugins import get_registry
    from conn.profiles.build import build

    with pytest.raises(ConfigError) as e:
        build(load_project(project / "conn.yml"), get_registry())
    return f"{e.value.path} {e.value}"


# --- the first-party splink matcher through the CLI, when installed ----------------------

SPLINK_PROJECT = """\
version: 1
sources:
  warehouse: {type: duckdb, config: {path: warehouse.duckdb}}
profiles:
  people:
    identifiers:
      customer_id: {limit: 1}
      email: {}
    edges:
      crm: {source: warehouse, stream: contacts, identifiers: {id: customer_id, email: email}}
      shop: {source: warehouse, stream: orders, identifiers: {buyer: email}}
    fields:
      name: {rule: source_priority, sources: [crm, shop]}
    matchers:
      - plugin: splink
        threshold: 0.9
        columns: [name, address]
        blocking: [["substr(name, 1, 1)"]]
"""

FIRST = ["Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ingrid",
         "Jonas", "Keiko", "Lars", "Mirela", "Nadia", "Oskar", "Priya", "Quentin", "Rosa",
         "Stefan", "Tamsin", "Ulla", "Viktor", "Wanda", "Xavier", "Yusuf"]
LAST = ["Abbott", "Brennan", "Castillo", "Dimitrov", "Eriksen", "Fontaine", "Gallagher",
        "Hoffmann", "Ivanova", "Jablonski", "Kowalczyk", "Lindqvist", "Moreau", "Novak",
        "Okafor", "Petrov", "Quinlan", "Rossi", "Schmidt", "Takahashi", "Underwood",
        "Varga", "Whitfield", "Xu", "Yilmaz"]
STREETS = ["Elm Street", "Harbour Road", "Mill Lane", "Station Avenue", "Queens Drive"]


def _splink_warehouse(path: Path) -> None:
    import duckdb

    people = [(f"{FIRST[i]} {LAST[(i * 7) % 25]}", f"{10 + 3 * i} {STREETS[i % 5]}")
              for i in range(25)]
    crm = [(f"c{i}", f"p{i}@crm.example", n, a) for i, (n, a) in enumerate(people[:20])]
    # Twins at one address with near-identical names: two customer_ids, kept apart.
    crm += [("c20", "t1@crm.example", "Zora Zimmermann", "7 Mill Lane"),
            ("c21", "t2@crm.example", "Zora Zimmerman", "7 Mill Lane")]
    typos = {0: ("Alcie Abbott", None), 1: (None, "13 Harbuor Road"), 2: ("Chloe Castilo", None),
             3: (None, "19 Station Avnue"), 4: ("Elena Eriksn", None)}
    shop = []
    for i, (n, a) in typos.items():
        name, addr = people[i]
        shop.append((f"s{i}@shop.example", n or name, a or addr))
    shop += [(f"s{i}@shop.example", n, a) for i, (n, a) in enumerate(people[20:], 20)]
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute("CREATE TABLE contacts (id VARCHAR, email VARCHAR, name VARCHAR, "
                "address VARCHAR)")
    con.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?)", crm)
    con.execute("CREATE TABLE orders (buyer VARCHAR, name VARCHAR, address VARCHAR)")
    con.executemany("INSERT INTO orders VALUES (?, ?, ?)", shop)
    con.close()


@pytest.mark.slow
def test_cli_build_with_the_splink_matcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("conn_matcher_splink")
    _splink_warehouse(tmp_path)
    (tmp_path / "conn.yml").write_text(SPLINK_PROJECT)
    monkeypatch.chdir(tmp_path)
    reset_registry(Registry())
    try:
        code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
        assert code == 0, out
        (b,) = json.loads(out)["builds"]
        # 22 crm + 10 shop records; the 5 planted typo pairs join; the twins pair is
        # scored above the threshold too but would hold two customer_ids: refused.
        assert (b["records"], b["matched_pairs"], b["profiles"]) == (32, 6, 27)
        code, out = cli(monkeypatch, capsys, "profiles", "show", "s3@shop.example", "--json")
        (p,) = json.loads(out)["profiles"]
        assert {(i["type"], i["value"]) for i in p["identities"]} == {
            ("customer_id", "c3"), ("email", "p3@crm.example"), ("email", "s3@shop.example")}
        code, out = cli(monkeypatch, capsys, "profiles", "show", "c20", "--json")
        (p,) = json.loads(out)["profiles"]
        assert ("customer_id", "c21") not in {(i["type"], i["value"]) for i in p["identities"]}
    finally:
        reset_registry(Registry(autoload=False))

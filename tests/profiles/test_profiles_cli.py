"""Profiles from conn.yml through the real CLI: three overlapping sources in a DuckDB
warehouse, ``conn profiles build|show|stats``, and a mirror sync reading
``profiles.people`` into the files destination (merges and withdrawals reach it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest
from conn.plugins import Registry, reset_registry

from tests.cli_in_process import run_cli

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_files")

PROJECT = """\
version: 1
sources:
  warehouse: {type: duckdb, config: {path: warehouse.duckdb}}
destinations:
  out:
    type: files
    purposes: [marketing]
    config:
      path: out
      materialize: true
      objects:
        people:
          identifiers: [profile_id]
          fields:
            type: object
            properties:
              profile_id: {type: string}
              email: {type: string}
              name: {type: string}
profiles:
  people:
    identifiers:
      customer_id: {limit: 1}
      email: {limit: 3}
      phone: {country_code: "44"}
      device_id: {}
    edges:
      app:
        source: warehouse
        stream: app_users
        identifiers: {mail: email, device: device_id}
        updated_at: seen_at
      crm:
        source: warehouse
        stream: contacts
        identifiers: {id: customer_id, email: email, phone: phone}
        updated_at: changed_at
    junk: {values: [test@test.com]}
    fields:
      name: {rule: source_priority, sources: [crm, app]}
      opt_in: {rule: most_recent}
syncs:
  people_out:
    source: profiles
    stream: profiles.people
    destination: out
    object: people
    mode: mirror
    consent: {columns: {marketing: opt_in}}
    mapping: {profile_id: profile_id, email: email, name: name}
"""


def warehouse(path: Path, app: list[tuple], crm: list[tuple]) -> None:
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute("CREATE OR REPLACE TABLE app_users (uid INT PRIMARY KEY, mail VARCHAR, "
                "device VARCHAR, name VARCHAR, opt_in BOOLEAN, seen_at TIMESTAMP)")
    con.execute("CREATE OR REPLACE TABLE contacts (id VARCHAR PRIMARY KEY, email VARCHAR, "
                "phone VARCHAR, name VARCHAR, opt_in BOOLEAN, changed_at TIMESTAMP)")
    if app:
        con.executemany("INSERT INTO app_users VALUES (?, ?, ?, ?, ?, ?)", app)
    if crm:
        con.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?)", crm)
    con.close()


APP = [
    (1, " Ann@Example.com ", "dev-a", "ann", True, "2026-01-01"),
    (2, "ann.work@example.com", "dev-a", None, True, "2026-01-02"),
    (3, "bob@example.com", "dev-b", "bob", True, "2026-01-01"),
    (4, "test@test.com", "dev-c", "cat", True, "2026-01-01"),
    (5, "test@test.com", "dev-d", "dan", True, "2026-01-01"),
]
CRM = [
    ("c1", "ann@example.com", "020 7946 0958", "Ann Smith", True, "2026-01-01"),
    ("c2", "bob@example.com", "+44 20 7946 0000", "Bob Jones", True, "2026-01-01"),
    # A family e-mail: two customers, kept apart by the customer_id limit.
    ("c3", "family@example.com", None, "Eve", True, "2026-01-01"),
    ("c4", "family@example.com", None, "Fay", True, "2026-01-01"),
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    warehouse(tmp_path, APP, CRM)
    (tmp_path / "conn.yml").write_text(PROJECT)
    monkeypatch.chdir(tmp_path)
    reset_registry(Registry())
    yield tmp_path
    reset_registry(Registry(autoload=False))


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str]:
    code, out, err = run_cli(monkeypatch, capsys, *args)
    return code, out + err


def snapshot(path: Path) -> dict[str, dict]:
    f = path / "out" / "_current" / "people.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []
    return {r["profile_id"]: r for r in rows}


@pytest.mark.slow
def test_build_show_stats(project, monkeypatch, capsys):
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    assert code == 0, out
    (b,) = json.loads(out)["builds"]
    # ann (2 app rows + crm), bob (app + crm), cat, dan, eve, fay.
    assert (b["records"], b["profiles"], b["junk_values"]) == (9, 6, 1)
    # docs/profiles.md, "Commands": the phases of the build, each in seconds.
    assert set(b["seconds"]) == {"read", "stitch", "golden", "save", "total"}
    assert all(v >= 0 for v in b["seconds"].values())
    code, out = cli(monkeypatch, capsys, "profiles", "show", "ANN.WORK@example.com", "--json")
    assert code == 0, out
    (p,) = json.loads(out)["profiles"]
    ids = {(i["type"], i["value"]) for i in p["identities"]}
    assert ids == {("email", "ann@example.com"), ("email", "ann.work@example.com"),
                   ("device_id", "dev-a"), ("customer_id", "c1"), ("phone", "442079460958")}
    assert p["golden"]["name"] == "Ann Smith"  # crm before app
    # The family e-mail is in two profiles: the customer_id limit kept them apart.
    code, out = cli(monkeypatch, capsys, "profiles", "show", "family@example.com", "--json")
    assert len(json.loads(out)["profiles"]) == 2
    code, out = cli(monkeypatch, capsys, "profiles", "stats", "--json")
    (s,) = json.loads(out)["sets"]
    assert s["junk"] == [{"type": "email", "value": "test@test.com", "records": 2}]
    assert {"type": "customer_id", "limit": 1, "profiles": 4} in s["at_limit"]
    code, out = cli(monkeypatch, capsys, "profiles", "stats")
    assert code == 0 and "email\ttest@test.com\t2" in out
    code, out = cli(monkeypatch, capsys, "profiles", "show", "nobody@example.com")
    assert code != 0 and "no profile holds" in out


@pytest.mark.slow
def test_merge_and_withdrawal_reach_a_mirror_destination(project, monkeypatch, capsys):
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    assert code == 0, out
    first = snapshot(project)
    assert len(first) == 6
    bob = {r["email"]: k for k, r in first.items()}["bob@example.com"]
    cat = {r["name"]: k for k, r in first.items()}["cat"]
    # Cat turns out to be Bob (a new app row ties dev-c to bob's e-mail): one profile.
    # Ann withdraws under her work e-mail, later than her other records.
    app = [*APP, (6, "bob@example.com", "dev-c", None, True, "2026-02-01"),
           (7, "ann.work@example.com", None, None, False, "2026-03-01")]
    warehouse(project, app, CRM)
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    assert code == 0, out
    assert json.loads(out)["builds"][0]["merges"] == 1
    assert cli(monkeypatch, capsys, "sync", "profiles", "out")[0] == 0
    second = snapshot(project)
    assert set(second) == set(first) - {cat, {r["email"]: k for k, r in first.items()}
                                        ["ann@example.com"]}
    assert bob in second
    # conn explain takes any identifier: Ann's work e-mail shows her profile, withheld.
    code, out = cli(monkeypatch, capsys, "explain", "ann.work@example.com", "--json")
    assert code == 0, out
    (ann,) = json.loads(out)["profiles"]
    (sync,) = ann["syncs"]
    assert sync["sync"] == "people_out" and sync["found"] and not sync["would_send"]
    code, out = cli(monkeypatch, capsys, "explain", "bob@example.com")
    assert f"profile {bob} (profiles.people)" in out and "WOULD SEND" in out
    code, out = cli(monkeypatch, capsys, "profiles", "show", bob, "--json")
    (p,) = json.loads(out)["profiles"]
    assert [(h["kind"], h["old_id"], h["new_id"]) for h in p["history"]] == \
        [("merge", cat, bob)]
    # The cause names the new record with its identifiers, not by its key alone (a
    # hash nobody can look up).
    assert re.fullmatch(r"record \d+ \(device_id=dev-c, email=bob@example\.com\)",
                        p["history"][0]["cause"]), p["history"][0]["cause"]
    # Once that record leaves the sources, the history keeps its key only.
    warehouse(project, [*APP, (7, "ann.work@example.com", None, None, False,
                               "2026-03-01")], CRM)
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, out = cli(monkeypatch, capsys, "profiles", "show", cat, "--json")
    causes = [h["cause"] for p in json.loads(out)["profiles"] for h in p["history"]
              if h["kind"] == "merge"]
    assert causes and all(re.fullmatch(r"record \d+", c) for c in causes), causes


@pytest.mark.slow
def test_a_merge_reaches_an_upsert_destination(project, monkeypatch, capsys):
    # Upsert mode: the absorbed profile's record is deleted (no duplicate of the person
    # stays); a profile withheld by consent is not (upsert never removes what left).
    (project / "conn.yml").write_text(PROJECT.replace("mode: mirror", "mode: upsert"))
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    assert cli(monkeypatch, capsys, "sync", "profiles", "out")[0] == 0
    first = snapshot(project)
    by_name = {r["name"]: k for k, r in first.items()}
    app = [*APP, (6, "bob@example.com", "dev-c", None, True, "2026-02-01"),
           (7, "ann.work@example.com", None, None, False, "2026-03-01")]
    warehouse(project, app, CRM)
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    assert code == 0, out
    second = snapshot(project)
    assert set(second) == set(first) - {by_name["cat"]}
    (sync,) = json.loads(out)["syncs"]
    assert sync["deleted"] == 1
    # Nothing more to remove on the next run.
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    assert code == 0 and json.loads(out)["syncs"][0]["deleted"] == 0, out
    assert snapshot(project) == second


def test_bad_profiles_section_names_file_and_path(project, monkeypatch, capsys):
    bad = PROJECT.replace("identifiers: {mail: email, device: device_id}",
                          "identifiers: {mail: email, device: gadget}")
    bad = bad.replace("sources: [crm, app]", "sources: [crm, web]")
    (project / "conn.yml").write_text(bad)
    code, out = cli(monkeypatch, capsys, "profiles", "build")
    assert code == 3
    assert "conn.yml: profiles.people.edges: unknown identifier type 'gadget'" in out
    assert "profiles.people.fields.name.sources[1]: unknown edge 'web'" in out


@pytest.mark.slow
def test_a_set_not_built_checks_but_does_not_sync(project, monkeypatch, capsys):
    code, out = cli(monkeypatch, capsys, "check")
    assert code == 0, out
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out")
    assert code != 0
    assert "profile set 'people' is not built yet: run 'conn profiles build people'" in out


@pytest.mark.slow
def test_changed_rules_rebuild_every_profile(project, monkeypatch, capsys, caplog):
    """Built under e-mail limit 3, then the limit drops to 1 with one new record: every
    profile follows the new rule (ann's two e-mails part), as a full build's do, and the
    log says why the build was not incremental. (An incremental build left the profiles
    it did not touch under the old limit: 7 profiles where a full build made 8.)"""
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    (project / "conn.yml").write_text(PROJECT.replace("email: {limit: 3}",
                                                      "email: {limit: 1}"))
    warehouse(project, [*APP, (6, "zed@example.com", "dev-z", "zed", True, "2026-01-03")],
              CRM)
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    assert code == 0, out
    (inc,) = json.loads(out)["builds"]
    assert inc["full"] and "other rules" in caplog.text
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--full", "--json")
    (full,) = json.loads(out)["builds"]
    assert (inc["profiles"], full["merges"], full["splits"]) == (full["profiles"], 0, 0)
    code, out = cli(monkeypatch, capsys, "profiles", "show", "ann.work@example.com", "--json")
    (p,) = json.loads(out)["profiles"]
    assert ("email", "ann@example.com") not in {(i["type"], i["value"])
                                                for i in p["identities"]}
    # Unchanged rules: the next build is incremental again.
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json")
    assert code == 0 and not json.loads(out)["builds"][0]["full"]


@pytest.mark.slow
def test_full_rebuild_keeps_ids_without_the_stored_entries(project, monkeypatch, capsys):
    """docs/profiles.md: ``--full`` re-stitches everything and a profile unchanged by it
    keeps its id; it reads no stored entries (docs/performance.md: not part of its
    peak), while an incremental build does."""
    from conn.profiles.engine import Previous
    from conn.profiles.store import ProfileStore

    read: list[bool] = []
    previous = ProfileStore.previous

    def spy(self: ProfileStore, name: str, entries: bool = True) -> Previous:
        read.append(entries)
        out = previous(self, name, entries)
        assert entries or out.entries.num_rows == 0
        return out

    monkeypatch.setattr(ProfileStore, "previous", spy)
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    before = snapshot_ids(project)
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--full", "--json")
    assert code == 0, out
    (b,) = json.loads(out)["builds"]
    assert b["full"] and (b["merges"], b["splits"]) == (0, 0)
    assert snapshot_ids(project) == before
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    assert read == [True, False, True]


def snapshot_ids(path: Path) -> dict[int, str]:
    con = duckdb.connect(str(path / ".conn" / "profiles.duckdb"), read_only=True)
    try:
        rows = con.sql('SELECT rkey, profile FROM "people.records"').fetchall()
    finally:
        con.close()
    return dict(rows)

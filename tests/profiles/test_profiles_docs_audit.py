"""docs/profiles.md checked claim by claim through the real CLI, where the other profile
tests do not already: records as distinct normalised identifier combinations, empty
values, phone and exact-id normalisation, the id format and its stability from nothing
and across ``--full``, the golden ``records`` count, field policies on every e-mail
column, the junk threshold and its settings, splits in ``conn profiles show``, changed
junk rules forcing a full build, and mirror versus upsert for a person who left."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
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
    policies: {email: hash}
    config:
      path: out
      materialize: true
      objects:
        people:
          identifiers: [profile_id]
profiles:
  people:
    identifiers:
      email: {}
      phone: {country_code: "44"}
    edges:
      app:
        source: warehouse
        stream: app_users
        identifiers: {mail: email, device: device_id, tel: phone}
        updated_at: seen_at
    JUNK
syncs:
  s:
    source: profiles
    stream: profiles.people
    destination: out
    object: people
    mode: mirror
    mapping: {profile_id: profile_id, email: email, email_all: email_all,
              device_id_all: device_id_all, records: records}
"""


def warehouse(path: Path, rows: list[tuple]) -> None:
    """The edge table: (uid, mail, device, tel, seen_at)."""
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute("CREATE OR REPLACE TABLE app_users (uid INT, mail VARCHAR, device VARCHAR, "
                "tel VARCHAR, seen_at TIMESTAMP)")
    if rows:
        con.executemany("INSERT INTO app_users VALUES (?, ?, ?, ?, ?)", rows)
    con.close()


def write(path: Path, rows: list[tuple], junk: str = "", **swap: str) -> None:
    """conn.yml (``junk`` replaces the JUNK line; ``swap`` old=new text) and the data."""
    text = PROJECT.replace("    JUNK\n", f"    {junk}\n" if junk else "")
    for old, new in swap.items():
        text = text.replace(old, new)
    (path / "conn.yml").write_text(text)
    warehouse(path, rows)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    reset_registry(Registry())
    yield tmp_path
    reset_registry(Registry(autoload=False))


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str]:
    code, out, err = run_cli(monkeypatch, capsys, *args)
    return code, out + err


def build(monkeypatch, capsys, *extra: str) -> dict:
    code, out = cli(monkeypatch, capsys, "profiles", "build", "--json", *extra)
    assert code == 0, out
    (b,) = json.loads(out)["builds"]
    return b


def show(monkeypatch, capsys, key: str) -> list[dict]:
    code, out = cli(monkeypatch, capsys, "profiles", "show", key, "--json")
    return json.loads(out)["profiles"] if code == 0 else []


def ids(monkeypatch, capsys, keys: list[str]) -> dict[str, str]:
    return {k: show(monkeypatch, capsys, k)[0]["profile_id"] for k in keys}


ANN = [
    # Rows 1 and 2 repeat the same identifiers once normalised: one record.
    (1, " Ann@Example.COM ", "d1", "00 44 20 7946 0000", "2026-01-01"),
    (2, "ann@example.com", "d1", "+44 20 7946 0000", "2026-01-02"),
    (3, "ann@example.com", " D2 ", "020 7946 0000", "2026-01-03"),
    # An empty (or blank) e-mail is no value: these two stay apart.
    (4, "", "x1", None, "2026-01-01"),
    (5, "   ", "x2", None, "2026-01-01"),
]


def test_records_normalisation_and_stable_ids(project, monkeypatch, capsys, tmp_path_factory):
    write(project, ANN)
    b = build(monkeypatch, capsys)
    assert (b["records"], b["profiles"], b["merges"], b["splits"]) == (4, 3, 0, 0)
    (ann,) = show(monkeypatch, capsys, "020 7946 0000")  # the set's country_code
    assert re.fullmatch(r"p_[0-9a-f]{16}", ann["profile_id"])
    got = {(i["type"], i["value"], i["records"]) for i in ann["identities"]}
    # E-mail trimmed and lowercased, phone to E.164 digits, device ids only trimmed.
    assert got == {("email", "ann@example.com", 2), ("phone", "442079460000", 2),
                   ("device_id", "d1", 1), ("device_id", "D2", 1)}
    assert show(monkeypatch, capsys, "d2") == []  # exact ids keep their case
    assert show(monkeypatch, capsys, "0044 20 7946 0000")[0]["profile_id"] == \
        ann["profile_id"]
    # "records" counts records (distinct identifier combinations), not rows: 2, not 3.
    assert ann["golden"]["records"] == 2
    keys = ["ann@example.com", "x1", "x2"]
    before = ids(monkeypatch, capsys, keys)
    assert len(set(before.values())) == 3
    # --full keeps every id of unchanged profiles; no merge, no split.
    full = build(monkeypatch, capsys, "--full")
    assert (full["merges"], full["splits"]) == (0, 0)
    assert ids(monkeypatch, capsys, keys) == before
    # The same data built from nothing (another folder, no .conn) gives the same ids.
    other = tmp_path_factory.mktemp("again")
    shutil.copy(project / "conn.yml", other / "conn.yml")
    warehouse(other, ANN)
    monkeypatch.chdir(other)
    build(monkeypatch, capsys)
    assert ids(monkeypatch, capsys, keys) == before


@pytest.mark.slow
def test_an_email_policy_covers_every_email_column(project, monkeypatch, capsys):
    """E-mail columns are tagged as personal data: ``email: hash`` hashes ``email`` and
    each element of ``email_all`` (before: ``email_all`` went out in clear text)."""
    write(project, ANN)
    build(monkeypatch, capsys)
    code, out = cli(monkeypatch, capsys, "preview", "s", "--json")
    assert code == 0, out
    (req,) = json.loads(out)["requests"]
    (ann,) = [r for r in req["records"] if r["email"]]
    digest = hashlib.sha256(b"ann@example.com").hexdigest()
    assert ann["email"] == digest and ann["email_all"] == [digest]
    assert ann["device_id_all"] == ["D2", "d1"] and ann["records"] == 2
    assert cli(monkeypatch, capsys, "sync", "profiles", "out")[0] == 0
    sent = (project / "out" / "_current" / "people.jsonl").read_text()
    assert "ann@example.com" not in sent and digest in sent


def shared(n: int) -> list[tuple]:
    """n records (one device each) that all typed the same e-mail."""
    return [(i, "Shared@Example.com", f"d{i}", None, "2026-01-01") for i in range(n)]


@pytest.mark.parametrize(("n", "junk", "email", "is_junk"), [
    (100, "", "{}", False),                          # default max_records: 100
    (101, "", "{}", True),
    (4, "junk: {max_records: 3}", "{}", True),       # for all types
    (4, "junk: {max_records: 3}", "{max_records: 5}", False),  # one type's own wins
    (3, "", "{max_records: 2}", True),
    (150, "junk: {max_records: 0}", "{}", False),    # 0 turns the threshold off
    (2, "junk: {values: [' SHARED@example.COM']}", "{}", True),  # normalised as its type
])
def test_junk_threshold(project, monkeypatch, capsys, n, junk, email, is_junk):
    write(project, shared(n), junk, **{"email: {}": f"email: {email}"})
    b = build(monkeypatch, capsys)
    assert (b["profiles"], b["junk_values"]) == ((n, 1) if is_junk else (1, 0))
    code, out = cli(monkeypatch, capsys, "profiles", "stats", "--json")
    (s,) = json.loads(out)["sets"]
    want = [{"type": "email", "value": "shared@example.com", "records": n}]
    assert s["junk"] == (want if is_junk else [])


def test_a_split_is_recorded_and_shown(project, monkeypatch, capsys):
    bridge = (3, "a@example.com", "d2", None, "2026-01-01")
    rows = [(1, "a@example.com", "d1", None, "2026-01-01"),
            (2, "b@example.com", "d2", None, "2026-01-01")]
    write(project, [*rows, bridge])
    build(monkeypatch, capsys)
    (p,) = show(monkeypatch, capsys, "a@example.com")
    warehouse(project, rows)  # the bridging record leaves: two people
    b = build(monkeypatch, capsys)
    assert (b["profiles"], b["splits"], b["merges"]) == (2, 1, 0)
    a, bb = (show(monkeypatch, capsys, k)[0] for k in ("a@example.com", "b@example.com"))
    assert p["profile_id"] in {a["profile_id"], bb["profile_id"]}
    new = bb if a["profile_id"] == p["profile_id"] else a
    (old,) = show(monkeypatch, capsys, p["profile_id"])
    hist = [(h["kind"], h["old_id"], h["new_id"]) for h in old["history"]]
    assert hist == [("split", p["profile_id"], new["profile_id"])]


def test_changed_junk_values_force_a_full_build(project, monkeypatch, capsys, caplog):
    write(project, shared(2))
    assert build(monkeypatch, capsys)["profiles"] == 1
    assert not build(monkeypatch, capsys)["full"]  # same rules: incremental
    write(project, shared(2), "junk: {values: [shared@example.com]}")
    b = build(monkeypatch, capsys)
    assert b["full"] and b["profiles"] == 2 and "other rules" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mirror", "upsert"])
def test_a_person_who_left_the_sources(project, monkeypatch, capsys, mode):
    """Mirror deletes a profile whose records left the sources; upsert keeps it."""
    rows = [(1, "a@example.com", "d1", None, "2026-01-01"),
            (2, "b@example.com", "d2", None, "2026-01-01")]
    write(project, rows, **{"mode: mirror": f"mode: {mode}"})
    build(monkeypatch, capsys)
    assert cli(monkeypatch, capsys, "sync", "profiles", "out")[0] == 0
    f = project / "out" / "_current" / "people.jsonl"
    assert len(f.read_text().splitlines()) == 2
    warehouse(project, rows[:1])
    build(monkeypatch, capsys)
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    assert code == 0, out
    left = 1 if mode == "mirror" else 2
    assert len(f.read_text().splitlines()) == left

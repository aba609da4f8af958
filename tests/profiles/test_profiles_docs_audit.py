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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest
from conn import hookimpl
from conn.destination import Capabilities, Destination, ObjectInfo, WriteRequest, WriteResult
from conn.plugins import Registry, reset_registry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_in_process import run_cli
from tests.conftest import examples, sampled

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


@pytest.mark.parametrize(("n", "junk", "email", "is_junk"), sampled([
    (100, "", "{}", False),                          # default max_records: 100
    (101, "", "{}", True),
    (4, "junk: {max_records: 3}", "{}", True),       # for all types
    (4, "junk: {max_records: 3}", "{max_records: 5}", False),  # one type's own wins
    (3, "", "{max_records: 2}", True),
    (150, "junk: {max_records: 0}", "{}", False),    # 0 turns the threshold off
    (2, "junk: {values: [' SHARED@example.COM']}", "{}", True),  # normalised as its type
], keep=3))
def test_junk_threshold(project, monkeypatch, capsys, n, junk, email, is_junk):
    write(project, shared(n), junk, **{"email: {}": f"email: {email}"})
    b = build(monkeypatch, capsys)
    assert (b["profiles"], b["junk_values"]) == ((n, 1) if is_junk else (1, 0))
    code, out = cli(monkeypatch, capsys, "profiles", "stats", "--json")
    assert code == 0, out
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
    assert not b["full"] and b["restitched"] == 2  # only the island that changed
    a, bb = (show(monkeypatch, capsys, k)[0] for k in ("a@example.com", "b@example.com"))
    assert p["profile_id"] in {a["profile_id"], bb["profile_id"]}
    new = bb if a["profile_id"] == p["profile_id"] else a
    (old,) = show(monkeypatch, capsys, p["profile_id"])
    hist = [(h["kind"], h["old_id"], h["new_id"]) for h in old["history"]]
    assert hist == [("split", p["profile_id"], new["profile_id"])]
    # Recorded with the build and the time (the cause: no new record here, so none).
    (h,) = old["history"]
    assert h["build_id"] == b["build_id"] and h["changed_at"] and h["cause"] is None
    code, out = cli(monkeypatch, capsys, "profiles", "show", p["profile_id"])
    assert code == 0, out
    assert f"\t{b['build_id']}\tsplit\t{p['profile_id']}\t{new['profile_id']}" in out


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


# A plain model of the documented rule for e-mails and devices without limits (neither
# has one by default) and below the junk threshold: records are the distinct normalised
# (e-mail, device) pairs, profiles the connected components of shared values.
MAILS = ["a@example.com", "b@example.com", "c@example.com"]
render_st = st.sampled_from([lambda s: s, str.upper, lambda s: f"  {s} ",
                             lambda s: s.title()])
row_st = st.tuples(st.one_of(st.none(), st.just(""), st.sampled_from(range(3))),
                   st.one_of(st.none(), st.sampled_from(["d0", "d1", "d2", "d3"])),
                   render_st)
rows_st = st.lists(row_st, min_size=1, max_size=8)


def as_rows(drawn: list[tuple]) -> list[tuple]:
    """(uid, mail, device, tel, seen_at) rows: e-mails by index, rendered at random."""
    return [(i, r(MAILS[m]) if isinstance(m, int) else m, d, None, "2026-01-01")
            for i, (m, d, r) in enumerate(drawn)]


def model(rows: list[tuple]) -> list[tuple[tuple, tuple, int]]:
    """Per profile: its e-mails, its devices, how many records."""
    records = {(m.strip().lower() or None if m else None, d) for _, m, d, _, _ in rows}
    records = {r for r in records if r != (None, None)}
    parent = {r: r for r in records}

    def find(r):
        while parent[r] != r:
            r = parent[r]
        return r
    for a in records:
        for b in records:
            if (a[0] and a[0] == b[0]) or (a[1] and a[1] == b[1]):
                parent[find(a)] = find(b)
    groups: dict = {}
    for r in records:
        groups.setdefault(find(r), []).append(r)
    return sorted((tuple(sorted({m for m, _ in g if m})), tuple(sorted({d for _, d in g if d})),
                   len(g)) for g in groups.values())


_dirs = iter(range(10**6))


@pytest.mark.slow
@settings(max_examples=examples(20), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=rows_st, more=rows_st, drop=st.sets(st.integers(0, 7)))
def test_profiles_follow_the_model_and_full_keeps_ids(project, monkeypatch, capsys,
                                                      first, more, drop):
    """The stream equals the model; after an incremental build over changed data, a
    ``--full`` rebuild changes no id and records no merge or split."""
    root = project / f"e{next(_dirs)}"
    root.mkdir()
    monkeypatch.chdir(root)
    a = as_rows(first)
    write(root, a, **{"    policies: {email: hash}\n": ""})
    build(monkeypatch, capsys)
    b = [r for r in a if r[0] not in drop] + [(100 + r[0], *r[1:]) for r in as_rows(more)]
    warehouse(root, b)
    inc = build(monkeypatch, capsys)

    def stream() -> list[dict]:
        code, out = cli(monkeypatch, capsys, "preview", "s", "-n", "100", "--json")
        assert code == 0, out
        return [r for q in json.loads(out)["requests"] for r in q["records"]]
    got = stream()
    assert sorted((tuple(r["email_all"] or []), tuple(r["device_id_all"] or []),
                   r["records"]) for r in got) == model(b)
    assert inc["profiles"] == len(model(b))
    for r in got:  # the value most of its records hold
        held = [(m, d) for _, m, d, _, _ in b if m and m.strip()]
        if r["email_all"]:
            n = {e: len({(m.strip().lower(), d) for m, d in held if m.strip().lower() == e})
                 for e in r["email_all"]}
            assert r["email"] == min(e for e in n if n[e] == max(n.values()))  # ties: least
    full = build(monkeypatch, capsys, "--full")
    assert (full["merges"], full["splits"]) == (0, 0)
    assert sorted(r["profile_id"] for r in stream()) == sorted(r["profile_id"] for r in got)


@pytest.mark.slow
def test_consent_under_a_phone_uses_the_sets_country_code(tmp_path, monkeypatch, capsys):
    """docs/profiles.md: each event's subject is normalised as the profile set normalises
    the type, a phone with the type's ``country_code``: a grant recorded under Ann's
    number written nationally (and under Bob's with a 00 prefix) reaches their profiles."""
    from tests.profiles import test_profiles_cli as base
    from tests.profiles.test_profile_consent_cli import CONSENT, consent_events

    base.warehouse(tmp_path, base.APP, base.CRM)
    (tmp_path / "conn.yml").write_text(
        CONSENT.replace("subject_type: [email, device_id]", "subject_type: phone"))
    consent_events(tmp_path, [
        ("020 7946 0958", "marketing", "granted", "2026-01-01 00:00:00"),
        ("0044 20 7946 0000", "marketing", "granted", "2026-01-01 00:00:00"),
        ("ann@example.com", "marketing", "withdrawn", "2026-02-01 00:00:00")])
    monkeypatch.chdir(tmp_path)
    reset_registry(Registry())
    try:
        assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
        code, out = cli(monkeypatch, capsys, "sync", "profiles", "out")
        assert code == 0, out
        # The e-mail event is not read as a phone: Ann's grant stands.
        assert sorted(r["email"] for r in base.snapshot(tmp_path).values()) == \
            ["ann@example.com", "bob@example.com"]
    finally:
        reset_registry(Registry(autoload=False))


#: What the destination that cannot delete received: (operation, rows) per write.
KEPT: list[tuple[str, list[dict]]] = []


class NoDelete(Destination):
    """An upsert-only destination object without delete (as an append-only API)."""

    name = "nodelete"
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def check(self) -> None:
        """Nothing to reach."""

    def objects(self) -> list[ObjectInfo]:
        """One object, keyed by profile id, that cannot delete."""
        caps = Capabilities(modes=frozenset({"upsert"}), supports_delete=False)
        return [ObjectInfo("people", {"type": "object"}, ("profile_id",), caps)]

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Keep what came."""
        KEPT.append((request.operation, request.to_pylist()))
        return WriteResult()


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    """This module's destination, for the test below."""
    register(NoDelete)


@pytest.mark.slow
def test_a_destination_that_cannot_delete_keeps_the_absorbed_record(
        project, monkeypatch, capsys, caplog):
    """docs/profiles.md: after a merge, an upsert sync to a destination that cannot
    delete keeps the absorbed record, and the run's log says how many."""
    reg = Registry()
    reg.add_module(sys.modules[__name__])
    reset_registry(reg)
    KEPT.clear()
    rows = [(1, "a@example.com", "d1", None, "2026-01-01"),
            (2, "b@example.com", "d2", None, "2026-01-01")]
    write(project, rows, **{"type: files": "type: nodelete", "mode: mirror": "mode: upsert"})
    build(monkeypatch, capsys)
    assert cli(monkeypatch, capsys, "sync", "profiles", "out")[0] == 0
    warehouse(project, [*rows, (3, "a@example.com", "d2", None, "2026-01-02")])
    assert build(monkeypatch, capsys)["merges"] == 1
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    assert code == 0, out
    assert {op for op, _ in KEPT} == {"upsert"}
    assert "cannot delete, so the records of 1 merged profiles stay there" in caplog.text


@pytest.mark.slow
def test_max_age_applies_to_the_winning_events_time(tmp_path, monkeypatch, capsys):
    """docs/profiles.md: ``max_age`` applies to the winning event's time (the latest
    across the person's identities). Ann's latest grant (under her device) is recent, an
    older one under her e-mail has expired: sent. Bob's only grant has expired: withheld
    with reason expired."""
    from tests.profiles import test_profiles_cli as base
    from tests.profiles.test_profile_consent_cli import CONSENT, consent_events

    base.warehouse(tmp_path, base.APP, base.CRM)
    (tmp_path / "conn.yml").write_text(CONSENT.replace(
        "subject_type: [email, device_id]",
        "subject_type: [email, device_id], max_age: {marketing: 1 month}"))
    consent_events(tmp_path, [
        ("ann@example.com", "marketing", "granted", "2025-06-01 00:00:00"),
        ("dev-a", "marketing", "granted", "2026-01-20 00:00:00"),
        ("bob@example.com", "marketing", "granted", "2025-12-01 00:00:00")])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONN_NOW", "2026-02-01T00:00:00")
    reset_registry(Registry())
    try:
        assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
        code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
        assert code == 0, out
        assert [r["email"] for r in base.snapshot(tmp_path).values()] == ["ann@example.com"]
        (s,) = json.loads(out)["syncs"]
        # Bob expired; cat, dan, eve and fay have no event under any identity.
        assert s["consent"]["withheld_by_reason"] == {
            "no_record": 4, "expired": 1, "malformed": 0, "denied": 0, "suppressed": 0}
    finally:
        reset_registry(Registry(autoload=False))


def test_customer_id_has_limit_one_without_being_declared(project, monkeypatch, capsys):
    """docs/profiles.md: ``limit`` defaults to 1 for ``customer_id``: two customers who
    share a family e-mail stay two profiles, and the e-mail sits in both."""
    rows = [(1, "family@example.com", "d1", "c1", "2026-01-01"),
            (2, "family@example.com", "d2", "c2", "2026-01-01"),
            (3, "solo@example.com", "d3", "c3", "2026-01-01")]
    write(project, rows, **{"tel: phone}": "tel: customer_id}"})
    assert build(monkeypatch, capsys)["profiles"] == 3
    assert len(show(monkeypatch, capsys, "family@example.com")) == 2
    code, out = cli(monkeypatch, capsys, "profiles", "stats", "--json")
    assert code == 0, out
    (s,) = json.loads(out)["sets"]
    assert {"type": "customer_id", "limit": 1, "profiles": 3} in s["at_limit"]

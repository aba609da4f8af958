"""Consent follows the person, through the real CLI (docs/profiles.md): a consent
source's events recorded under any identifier of a profile apply to the profile. A
withdrawal recorded under one secondary e-mail takes the profile out of a mirror
destination on the next run; ``conn explain`` shows, from any identifier, which
identity's event decided each purpose; bad ``subject_type`` settings name the file, the
path and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.profiles.test_profiles_cli import PROJECT, cli, project, snapshot

__all__ = ["project"]  # the fixture, shared with the profiles CLI tests

CONSENT = PROJECT.replace(
    "    consent: {columns: {marketing: opt_in}}\n",
    "    consent: {source: events, subject_type: [email, device_id]}\n",
).replace("syncs:\n", """consent_sources:
  events: {source: warehouse, stream: consent_events, subject: who}
syncs:
""", 1)


def consent_events(path: Path, rows: list[tuple]) -> None:
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute("CREATE OR REPLACE TABLE consent_events (who VARCHAR, purpose VARCHAR, "
                "status VARCHAR, timestamp TIMESTAMP)")
    con.executemany("INSERT INTO consent_events VALUES (?, ?, ?, ?)", rows)
    con.close()


#: Ann grants under her main e-mail, Bob under his device; nobody else has an event.
GRANTS = [("ann@example.com", "marketing", "granted", "2026-01-01 00:00:00"),
          ("dev-b", "marketing", "granted", "2026-01-01 00:00:00"),
          # Junk identifies no one: this grant reaches neither cat nor dan.
          ("test@test.com", "marketing", "granted", "2026-01-01 00:00:00")]


@pytest.mark.slow
def test_a_withdrawal_under_a_secondary_email_leaves_the_mirror(project, monkeypatch,
                                                                capsys):
    (project / "conn.yml").write_text(CONSENT)
    consent_events(project, GRANTS)
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    assert code == 0, out
    first = snapshot(project)
    # Only the two profiles with a grant under one of their identities; no record: out.
    assert sorted(r["email"] for r in first.values()) == ["ann@example.com",
                                                          "bob@example.com"]
    ann = {r["email"]: k for k, r in first.items()}["ann@example.com"]
    # Ann withdraws under her work e-mail, as the CMP recorded it (case and blanks).
    consent_events(project, [*GRANTS, (" Ann.Work@Example.com", "marketing", "withdrawn",
                                       "2026-03-01 00:00:00")])
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    assert code == 0, out
    second = snapshot(project)
    assert ann not in second and len(second) == 1
    # Explained from her device id: her profile, each identity's latest event per
    # purpose, and which one decided.
    code, out = cli(monkeypatch, capsys, "explain", "dev-a", "--json")
    assert code == 0, out
    (p,) = json.loads(out)["profiles"]
    assert p["profile_id"] == ann
    (sync,) = p["syncs"]
    assert sync["found"] and not sync["would_send"]
    marketing = sync["consent"]["marketing"]
    assert marketing["decision"] == "denied"
    (decided,) = marketing["evidence"]
    assert (decided["identity_type"], decided["identity"], decided["status"]) == \
        ("email", "ann.work@example.com", "withdrawn")
    per_identity = {(e["identity"], e["status"], e["decided"])
                    for e in marketing["identities"]}
    assert per_identity == {("ann@example.com", "granted", False),
                            ("ann.work@example.com", "withdrawn", True)}
    code, out = cli(monkeypatch, capsys, "explain", "ANN@example.com")
    assert code == 0, out
    assert "identity email=ann.work@example.com: withdrawn 2026-03-01" in out
    assert "(decided)" in out
    # Bob, from his device id: his grant decided, and where his data went since when.
    code, out = cli(monkeypatch, capsys, "explain", "dev-b", "--json")
    (p,) = json.loads(out)["profiles"]
    (sync,) = p["syncs"]
    assert sync["would_send"] and sync["recipient"]["destination"] == "out"
    (got,) = sync["delivered"]
    assert got["key"] == p["profile_id"] and got["first_acknowledged_at"]
    (ev,) = sync["consent"]["marketing"]["identities"]
    assert (ev["identity_type"], ev["identity"], ev["decided"]) == ("device_id", "dev-b", True)


def test_subject_type_errors_name_file_path_and_expectation(project, monkeypatch, capsys):
    bad = CONSENT.replace("subject_type: [email, device_id]",
                          "subject_type: [email, gadget], subject: email")
    (project / "conn.yml").write_text(bad)
    code, out = cli(monkeypatch, capsys, "check")
    assert code == 3, out
    assert ("conn.yml: syncs.people_out.consent.subject_type[1]: unknown identifier type "
            "'gadget': expected an identifier type of profile set 'people'") in out
    assert "conn.yml: syncs.people_out.consent.subject: expected either 'subject'" in out
    # Only a sync over a profile set reads its subjects as identifier types.
    other = CONSENT.replace("stream: profiles.people", "stream: profiles.nobody")
    (project / "conn.yml").write_text(other)
    code, out = cli(monkeypatch, capsys, "check")
    assert code == 3 and "syncs.people_out.consent.subject_type: subject_type applies " \
        "to a sync reading a profile set" in out


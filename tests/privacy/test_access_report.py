"""The access report of ``conn explain SUBJECT --json`` (docs/consent.md, "Access
reports" and "The access report's JSON"), through the command line: personal data after
policies, purposes, legal bases with the consent's time and expiry, recipients with
where they write and since when, and nothing secret."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fakes
from tests.cli_in_process import run_cli
from tests.conftest import examples

NOW = "2026-03-31T12:00:00Z"
TOKEN = "tok-very-secret-123"


def cli(monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> tuple[int, str]:
    code, out, _ = run_cli(monkeypatch, capsys, *args)
    return code, out


def people(rows: list[tuple[str, str, str | None, str | None]]) -> None:
    fakes.TABLES["people"] = (pa.table({
        "id": pa.array([r[0] for r in rows], pa.string()),
        "email": pa.array([r[1] for r in rows], pa.string()),
        "mkt": pa.array([r[2] for r in rows], pa.string()),
        "mkt_at": pa.array([r[3] for r in rows], pa.string())}), ("id",))


def consent(events: list[tuple[str, str, str, str]]) -> None:
    fakes.TABLES["consent"] = (pa.table({
        "customer": pa.array([e[0] for e in events], pa.string()),
        "purpose": pa.array([e[1] for e in events], pa.string()),
        "status": pa.array([e[2] for e in events], pa.string()),
        "at": pa.array([e[3] for e in events], pa.string()),
        "region": pa.array(["EU"] * len(events), pa.string())}), ())


PROJECT = {
    "version": 1,
    "sources": {"wh": {"type": "memory"}},
    "destinations": {
        "crm": {"type": "recorder", "purposes": ["service"],
                "policies": {"email": "mask"},
                "config": {"token": "${CRM_TOKEN}", "reject": ["nobody@example.com"]}},
        "mail": {"type": "recorder", "purposes": ["marketing"]},
    },
    "consent_sources": {"cs": {"source": "wh", "stream": "consent", "subject": "customer",
                               "timestamp": "at", "jurisdiction": "region"}},
    "syncs": {
        "to_crm": {"source": "wh", "stream": "people", "destination": "crm",
                   "object": "contacts", "primary_key": "id", "match_key": "id",
                   "mapping": {"id": "id", "email": "email"},
                   "consent": {"source": "cs", "max_age": {"service": "P1Y"},
                               "legal_basis": {"service": "contract"}}},
        "to_mail": {"source": "wh", "stream": "people", "destination": "mail",
                    "object": "contacts", "primary_key": "id", "match_key": "email",
                    "mapping": {"id": "id", "email": "email"},
                    "consent": {"columns": {"marketing": "mkt"},
                                "granted_at": {"marketing": "mkt_at"},
                                "max_age": {"marketing": "24 months"}}},
    },
}


@pytest.fixture
def project(tmp_path: Path, registry: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONN_NOW", NOW)
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    (tmp_path / "conn.yml").write_text(yaml.safe_dump(PROJECT))
    people([("1", "ann@example.com", "yes", "2026-01-01T00:00:00"),
            ("2", "ben@example.com", "yes", "2020-01-01T00:00:00")])
    consent([("1", "service", "granted", "2026-02-01T00:00:00"),
             ("2", "service", "granted", "2024-01-01T00:00:00")])
    return tmp_path


def report(monkeypatch: pytest.MonkeyPatch, capsys: Any, subject: str) -> dict[str, Any]:
    code, out = cli(monkeypatch, capsys, "explain", subject, "--json")
    assert code == 0, out
    assert TOKEN not in out
    return json.loads(out)


def test_report_of_a_delivered_subject(project: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: Any) -> None:
    assert cli(monkeypatch, capsys, "sync", "wh", "crm")[0] == 0
    assert cli(monkeypatch, capsys, "sync", "wh", "mail")[0] == 0
    out = report(monkeypatch, capsys, "1")
    a = out["access_report"]
    assert a["regulation"] == "GDPR Art. 15" and a["subject"] == "1"
    assert a["generated_at"] == NOW == out["generated_at"]
    data = {d["destination"]: d for d in a["personal_data"]}
    assert data["crm"]["records"] == [{"id": "1", "email": "a***@example.com"}]
    assert data["crm"]["policies"]["email"] == "mask"
    assert data["mail"]["records"] == [{"id": "1", "email": "ann@example.com"}]
    assert all(d["would_send"] and d["delivered"] for d in data.values())
    assert a["purposes"] == ["marketing", "service"]
    bases = {b["purpose"]: b for b in a["legal_bases"]}
    service = bases["service"]
    assert (service["allowed"], service["legal_basis"], service["decision"]) == \
        (True, "consent", "granted")
    [event] = service["evidence"]
    assert event["consent_source"] == "cs" and event["jurisdiction"] == "EU"
    assert event["timestamp"].startswith("2026-02-01T00:00:00")
    assert event["expires_at"] == "2027-02-01T00:00:00Z"
    [col] = bases["marketing"]["evidence"]
    assert col == {"column": "mkt", "value": "yes", "granted_at": "2026-01-01T00:00:00Z",
                   "expires_at": "2028-01-01T00:00:00Z"}
    recipients = {r["destination"]: r for r in a["recipients"]}
    crm = recipients["crm"]
    assert (crm["type"], crm["object"], crm["purposes"], crm["syncs"]) == \
        ("recorder", "contacts", ["service"], ["to_crm"])
    assert crm["identity"] == {"reject": ["nobody@example.com"]}  # no token
    assert crm["delivered"] and crm["would_send"]
    assert crm["first_delivered_at"] == crm["last_delivered_at"]
    assert crm["first_delivered_at"].endswith("Z")
    expiry = {e["purpose"]: e for e in a["consent_expiry"]}
    assert expiry == {
        "service": {"sync": "to_crm", "purpose": "service", "max_age": "P1Y",
                    "expires_at": "2027-02-01T00:00:00Z", "expired": False},
        "marketing": {"sync": "to_mail", "purpose": "marketing", "max_age": "24 months",
                      "expires_at": "2028-01-01T00:00:00Z", "expired": False}}
    code, text = cli(monkeypatch, capsys, "explain", "1")
    assert code == 0 and TOKEN not in text
    assert "purpose service: allowed (consent), granted, consent expires " \
           "2027-02-01T00:00:00Z (max_age P1Y)" in text
    assert "recipient: crm (recorder), object contacts, reject=['nobody@example.com']" \
        in text
    assert "first acknowledged" in text


def test_since_when_survives_an_update(project: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: Any) -> None:
    assert cli(monkeypatch, capsys, "sync", "wh", "crm")[0] == 0
    before = {r["destination"]: r for r in report(monkeypatch, capsys, "1")
              ["access_report"]["recipients"]}["crm"]
    time.sleep(1.1)
    people([("1", "ann@example.org", "yes", "2026-01-01T00:00:00"),
            ("2", "ben@example.com", "yes", "2020-01-01T00:00:00")])
    assert cli(monkeypatch, capsys, "sync", "wh", "crm")[0] == 0
    after = {r["destination"]: r for r in report(monkeypatch, capsys, "1")
             ["access_report"]["recipients"]}["crm"]
    assert after["first_delivered_at"] == before["first_delivered_at"]
    assert after["last_delivered_at"] > before["last_delivered_at"]


def test_expired_consent_and_legal_basis(project: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: Any) -> None:
    a = report(monkeypatch, capsys, "2")["access_report"]
    bases = {b["purpose"]: b for b in a["legal_bases"]}
    # Service: the grant expired, the sync's declared basis applies.
    assert (bases["service"]["allowed"], bases["service"]["legal_basis"],
            bases["service"]["decision"]) == (True, "contract", "expired")
    assert bases["service"]["evidence"][0]["expired"] is True
    # Marketing: expired and no other basis: blocked.
    assert (bases["marketing"]["allowed"], bases["marketing"]["legal_basis"],
            bases["marketing"]["decision"]) == (False, None, "expired")
    expiry = {e["purpose"]: e for e in a["consent_expiry"]}
    assert expiry["marketing"]["expired"] and \
        expiry["marketing"]["expires_at"] == "2022-01-01T00:00:00Z"
    assert [r["destination"] for r in a["recipients"]] == ["crm"]
    assert a["purposes"] == ["service"]


def test_withheld_now_but_delivered_before_and_gone_from_the_source(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    assert cli(monkeypatch, capsys, "sync", "wh", "mail")[0] == 0
    people([("1", "ann@example.com", "no", "2026-03-01T00:00:00"),
            ("2", "ben@example.com", "yes", "2020-01-01T00:00:00")])
    assert cli(monkeypatch, capsys, "sync", "wh", "mail")[0] == 0  # upsert: still held
    a = report(monkeypatch, capsys, "1")["access_report"]
    [mail] = [d for d in a["personal_data"] if d["destination"] == "mail"]
    assert (mail["would_send"], mail["delivered"], mail["records"]) == (False, True, [])
    [rec] = [r for r in a["recipients"] if r["destination"] == "mail"]
    assert rec["delivered"] and not rec["would_send"] and rec["first_delivered_at"]
    people([("2", "ben@example.com", "yes", "2020-01-01T00:00:00")])
    out = report(monkeypatch, capsys, "1")
    [s] = [s for s in out["syncs"] if s["sync"] == "to_mail"]
    assert not s["found"] and s["delivered"][0]["match_value"] == "ann@example.com"
    assert [r["destination"] for r in out["access_report"]["recipients"]] == ["mail"]
    code, text = cli(monkeypatch, capsys, "explain", "1")
    assert code == 0
    assert "subject not in the synced rows" in text and "delivered: contacts" in text


# --- the documented rules on random grant times -----------------------------------------

def model_decision(value: str | None, granted_at: str | None) -> tuple[bool, str]:
    """docs/consent.md for one consent column with granted_at and max_age 24 months."""
    code = {"yes": 1, "no": 3, "maybe": 2, None: 0}[value]
    if code != 1:
        return False, {3: "denied", 2: "malformed", 0: "no_record"}[code]
    try:
        t = dt.datetime.fromisoformat(granted_at) if granted_at else None
    except ValueError:
        t = None
    if t is None:
        return False, "malformed"
    t = t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t
    end = t.replace(year=t.year + 2) if not (t.month == 2 and t.day == 29) else \
        t.replace(year=t.year + 2, day=28)
    if dt.datetime(2026, 3, 31, 12) > end:
        return False, "expired"
    return True, "granted"


@settings(max_examples=examples(12), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.sampled_from(["yes", "no", "maybe", None]),
       granted_at=st.sampled_from(["2024-03-31T12:00:00", "2024-03-31T11:59:59",
                                   "2024-02-29T00:00:00", "2026-01-01T00:00:00+05:00",
                                   None, "not a time"]))
def test_decisions_follow_the_documented_rules(project: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: Any, value: str | None,
                                               granted_at: str | None) -> None:
    people([("7", "g@example.com", value, granted_at)])
    a = report(monkeypatch, capsys, "7")["access_report"]
    [marketing] = [b for b in a["legal_bases"] if b["purpose"] == "marketing"]
    allowed, decision = model_decision(value, granted_at)
    assert (marketing["allowed"], marketing["decision"]) == (allowed, decision)
    [expiry] = [e for e in a["consent_expiry"] if e["purpose"] == "marketing"]
    assert expiry["expired"] == (decision == "expired")
    assert ("mail" in [r["destination"] for r in a["recipients"]]) == allowed

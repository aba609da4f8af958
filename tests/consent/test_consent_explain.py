"""``conn explain``: the logic and the command body, through real plugins (test kit)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from conn.config.load import load_project
from conn.plugins import Registry
from conn.runtime.explain import explain

from tests import fakes

PROJECT = {
    "version": 1,
    "sources": {"wh": {"type": "memory"}},
    "destinations": {
        "crm": {"type": "recorder", "purposes": ["service"],
                "policies": {"email": "mask"}},
        "mail": {"type": "recorder", "purposes": ["marketing"]},
    },
    "consent_sources": {"cs": {"source": "wh", "stream": "consent", "subject": "customer",
                               "jurisdiction": "region"}},
    "syncs": {
        "to_crm": {"source": "wh", "stream": "people", "destination": "crm",
                   "object": "contacts", "primary_key": "id", "match_key": "id",
                   "mapping": {"id": "id", "email": "email"},
                   "consent": {"legal_basis": {"service": "contract"}}},
        "to_mail": {"source": "wh", "stream": "people", "destination": "mail",
                    "object": "contacts", "primary_key": "id", "match_key": "email",
                    "mapping": {"id": "id", "email": "email"},
                    "consent": {"source": "cs"}},
    },
}


@pytest.fixture
def project(tmp_path: Path, registry: Registry):
    fakes.TABLES["people"] = (pa.table({"id": ["1", "2"], "email": ["a@x.com", "b@x.com"]}),
                              ("id",))
    fakes.TABLES["consent"] = (pa.table({
        "customer": ["1", "1", "2"], "purpose": ["marketing"] * 3,
        "status": ["granted", "withdrawn", "granted"],
        "timestamp": ["2024-01-01", "2024-02-01", "2024-01-01"],
        "region": ["EU", "EU", "US"]}), ())
    path = tmp_path / "conn.yml"
    path.write_text(yaml.safe_dump(PROJECT))
    return load_project(path, registry=registry)


def test_explain_withdrawn_subject(project, registry: Registry) -> None:
    out = explain(project, "1", registry)
    assert out["sent_by"] == ["to_crm"]
    assert out["destinations"] == ["crm"]
    crm, mail = out["syncs"]
    assert crm["would_send"] and crm["consent"]["service"] == {
        "allowed": True, "decision": "no_record", "legal_basis": "contract",
        "evidence": [{"none": "no consent column value and no consent event"}]}
    assert crm["records"] == [{"id": "1", "email": "a***@x.com"}]
    assert crm["fields"]["email"]["policy"]["action"] == "mask"
    assert not mail["would_send"]
    ev = mail["consent"]["marketing"]
    assert ev["allowed"] is False and ev["decision"] == "denied"
    assert ev["evidence"][0]["status"] == "withdrawn"
    assert ev["evidence"][0]["jurisdiction"] == "EU"
    assert ev["evidence"][0]["timestamp"].startswith("2024-02-01")


def test_explain_granted_and_unknown_subject(project, registry: Registry) -> None:
    out = explain(project, "2", registry)
    assert out["sent_by"] == ["to_crm", "to_mail"]
    assert out["syncs"][1]["consent"]["marketing"]["legal_basis"] == "consent"
    out = explain(project, "nobody", registry)
    assert out["sent_by"] == [] and not any(s["found"] for s in out["syncs"])


def test_explain_command(project, registry: Registry, capsys) -> None:
    from conn.cli.explain import explain_command

    explain_command("1", project.file, json_out=True)
    data = json.loads(capsys.readouterr().out)
    assert data["sent_by"] == ["to_crm"]
    explain_command("1", project.file, json_out=False)
    text = capsys.readouterr().out
    assert "purpose marketing: blocked, denied" in text
    assert "WOULD SEND" in text

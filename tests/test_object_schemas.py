"""Objects declared by packaged JSON Schemas: ``ObjectInfo.from_package``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conn.destination import Capabilities, ObjectInfo, object_schema_errors, packaged_object_names
from conn.errors import ConnError

CONTACTS = {
    "description": "People in Acme CRM.",
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "string"}, "email": {"type": "string", "format": "email"},
                   "name": {"type": ["string", "null"]}},
    "x-identifiers": ["id", "email"],
    "x-personal": {"email": "email", "name": "name"},
}


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A package ``acme_objects`` shipping objects/contacts.schema.json (and whatever a
    test adds), importable for the test only."""
    pkg = tmp_path / "acme_objects"
    (pkg / "objects").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "objects" / "contacts.schema.json").write_text(json.dumps(CONTACTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    sys.modules.pop("acme_objects", None)


def test_an_object_is_read_from_its_packaged_schema(package: Path) -> None:
    caps = Capabilities(batch_size=50, modes=frozenset({"upsert", "mirror"}))
    obj = ObjectInfo.from_package("acme_objects", "contacts", caps)
    assert obj.name == "contacts" and obj.capabilities is caps
    assert obj.identifiers == ("id", "email")
    assert obj.personal == {"email": "email", "name": "name"}
    assert obj.description == "People in Acme CRM."
    assert obj.fields == {k: v for k, v in CONTACTS.items() if not k.startswith("x-")}
    assert obj.required == ("id",) and not object_schema_errors(obj)
    assert ObjectInfo.from_package("acme_objects", "contacts").capabilities == Capabilities()


def test_packaged_object_names(package: Path) -> None:
    (package / "objects" / "companies.schema.json").write_text(
        json.dumps({**CONTACTS, "x-personal": {}}))
    (package / "objects" / "notes.txt").write_text("not an object")
    assert packaged_object_names("acme_objects") == ["companies", "contacts"]
    assert packaged_object_names("no_such_package_here") == []


def test_more_fields_identifiers_and_personal_tags(package: Path) -> None:
    base = ObjectInfo.from_package("acme_objects", "contacts")
    obj = base.with_fields({"ltv": {"type": "number"}, "crm_id": {"type": "string"}},
                           identifiers=["crm_id", "id"], personal={"crm_id": "id"})
    assert list(obj.properties) == ["id", "email", "name", "ltv", "crm_id"]
    assert obj.identifiers == ("id", "email", "crm_id")
    assert obj.personal == {"email": "email", "name": "name", "crm_id": "id"}
    assert list(base.properties) == ["id", "email", "name"]  # the original is unchanged


def test_a_missing_or_broken_schema_is_a_clear_error(package: Path) -> None:
    with pytest.raises(ConnError, match=r"objects/deals\.schema\.json does not exist "
                                        r"\(objects: contacts\)"):
        ObjectInfo.from_package("acme_objects", "deals")
    (package / "objects" / "bad.schema.json").write_text("{not json")
    with pytest.raises(ConnError, match="is not JSON"):
        ObjectInfo.from_package("acme_objects", "bad")
    (package / "objects" / "keyless.schema.json").write_text(json.dumps({"type": "object"}))
    with pytest.raises(ConnError, match="needs \"x-identifiers\""):
        ObjectInfo.from_package("acme_objects", "keyless")

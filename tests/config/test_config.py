"""conn.yml loading: errors name the file, the path inside it and what was expected;
secrets from ${ENV} never show up."""

from __future__ import annotations

from pathlib import Path

import pytest
from conn import secrets
from conn.config import load_project
from conn.errors import ConfigError, ConfigErrors

BASE = """\
version: 1
sources:
  mem:
    type: memory
    config: {token: "${MEM_TOKEN}"}
destinations:
  crm:
    type: recorder
    purposes: [marketing]
    config: {token: "${CRM_TOKEN}"}
syncs:
  s1:
    source: mem
    stream: people
    destination: crm
    object: contacts
    primary_key: id
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "conn.yml"
    p.write_text(text)
    return p


def test_valid_project_loads_and_registers_env_secrets(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("MEM_TOKEN", "mem-secret-123")
    monkeypatch.setenv("CRM_TOKEN", "crm-secret-456")
    proj = load_project(write(tmp_path, BASE), registry=registry)
    assert proj.syncs["s1"].primary_key == ("id",)
    assert proj.destinations["crm"].config["token"] == "crm-secret-456"
    assert secrets.redact("token crm-secret-456 and mem-secret-123") == "token *** and ***"


@pytest.mark.parametrize("value", ["true", "7", "marketing", "{a: 1}"])
def test_purposes_or_policies_of_a_wrong_type_are_config_errors(tmp_path, registry,
                                                               monkeypatch, value):
    """A destination's purposes or policies that are not a list or a mapping are reported
    with the path (the loader used to crash building the connector: 'bool' object is not
    iterable)."""
    monkeypatch.setenv("MEM_TOKEN", "m")
    monkeypatch.setenv("CRM_TOKEN", "c")
    for key in ("purposes", "policies"):
        text = BASE.replace("    purposes: [marketing]\n", f"    {key}: {value}\n")
        with pytest.raises(ConfigError, match=f"destinations.crm.{key}"):
            load_project(write(tmp_path, text), registry=registry)


def test_missing_env_var_names_path(tmp_path, registry, monkeypatch):
    monkeypatch.delenv("MEM_TOKEN", raising=False)
    monkeypatch.setenv("CRM_TOKEN", "x" * 8)
    with pytest.raises(ConfigError) as e:
        load_project(write(tmp_path, BASE), registry=registry)
    assert "sources.mem.config.token" in str(e.value)
    assert "MEM_TOKEN" in str(e.value)
    assert str(tmp_path / "conn.yml") in str(e.value)


def test_plugin_schema_error_names_exact_path_without_echoing_secret(tmp_path, registry,
                                                                     monkeypatch):
    monkeypatch.setenv("MEM_TOKEN", "abcd-secret")
    text = BASE.replace('config: {token: "${CRM_TOKEN}"}', "config: {token: 12345678}")
    with pytest.raises(ConfigError) as e:
        load_project(write(tmp_path, text), registry=registry)
    msg = str(e.value)
    assert "destinations.crm.config.token" in msg
    assert "expected a string, got integer" in msg
    assert "12345678" not in msg


def test_all_problems_reported_at_once(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("MEM_TOKEN", "abcd-secret")
    monkeypatch.setenv("CRM_TOKEN", "abcd-secret2")
    text = BASE.replace("destination: crm\n", "destination: nowhere\n").replace(
        "type: memory", "type: memory\n    colour: blue")
    with pytest.raises(ConfigErrors) as e:
        load_project(write(tmp_path, text), registry=registry)
    paths = {err.path for err in e.value.errors}
    assert "sources.mem" in paths  # unknown key 'colour'
    assert "syncs.s1.destination" in paths
    assert "unknown key(s) 'colour'" in str(e.value)


def test_unknown_plugin_type_is_a_config_error(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("MEM_TOKEN", "abcd-secret")
    monkeypatch.setenv("CRM_TOKEN", "abcd-secret2")
    with pytest.raises(ConfigError) as e:
        load_project(write(tmp_path, BASE.replace("type: recorder", "type: hubspotx")),
                     registry=registry)
    assert "destinations.crm.type" in str(e.value)
    assert "hubspotx" in str(e.value)


def test_sync_purposes_may_narrow_never_widen(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("MEM_TOKEN", "abcd-secret")
    monkeypatch.setenv("CRM_TOKEN", "abcd-secret2")
    with pytest.raises(ConfigError) as e:
        load_project(write(tmp_path, BASE + "    purposes: [marketing, advertising]\n"),
                     registry=registry)
    assert "syncs.s1.purposes" in str(e.value)
    assert "advertising" in str(e.value)


def test_invalid_yaml_names_line(tmp_path, registry):
    with pytest.raises(ConfigError) as e:
        load_project(write(tmp_path, "version: 1\nsources: [\n"), registry=registry)
    assert "line" in str(e.value) and "invalid YAML" in str(e.value)


def test_mode_enum_error(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("MEM_TOKEN", "abcd-secret")
    monkeypatch.setenv("CRM_TOKEN", "abcd-secret2")
    with pytest.raises(ConfigError) as e:
        load_project(write(tmp_path, BASE + "    mode: sometimes\n"), registry=registry)
    assert "syncs.s1.mode" in str(e.value)
    assert "expected one of 'upsert'" in str(e.value)

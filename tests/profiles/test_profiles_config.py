"""``profiles:`` in conn.yml: defaults as docs/profiles.md states them, and every bad
value reported with the file and its path."""

from __future__ import annotations

from pathlib import Path

import pytest
from conn.config import load_project
from conn.config.profiles import profile_sets
from conn.errors import ConfigError, ConfigErrors

HEAD = """\
version: 1
sources:
  wh: {type: duckdb, config: {path: w.duckdb}}
destinations: {}
syncs: {}
"""


def load(tmp_path: Path, body: str):
    f = tmp_path / "conn.yml"
    f.write_text(HEAD + body)
    return load_project(f, validate_plugins=False)


def problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body)
    exc = info.value
    errs = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    return [f"{e.path}: {e.detail}" for e in errs]


def test_defaults(tmp_path: Path) -> None:
    project = load(tmp_path, """
profiles:
  people:
    identifiers: {email: {limit: 2}, loyalty: {kind: custom, limit: 1}}
    edges:
      crm: {source: wh, stream: contacts,
            identifiers: {id: customer_id, mail: email, card: loyalty, dev: device_id}}
""")
    (ps,) = profile_sets(project).values()
    assert list(ps.types) == ["email", "loyalty", "customer_id", "device_id"]
    assert ps.rounds == (("email",), ("loyalty",), ("customer_id",), ("device_id",))
    assert ps.types["customer_id"].limit == 1 and ps.types["device_id"].limit is None
    assert ps.types["email"].max_records == 100
    assert ps.stream == "profiles.people"
    assert project.sources["profiles"].type == "profiles"


def test_every_problem_names_its_path(tmp_path: Path) -> None:
    got = problems(tmp_path, """
profiles:
  people:
    edges:
      crm: {source: nowhere, stream: contacts, identifiers: {mail: gadget}}
      app: {source: wh, identifiers: {mail: email}}
    rules: [[email], [phone]]
    fields:
      name: {rule: source_priority}
      plan: {rule: most_recent, sources: [web]}
""")
    assert "profiles.people.edges.crm.source: unknown source 'nowhere' (declared: wh)" in got
    assert any(g.startswith("profiles.people.edges: unknown identifier type 'gadget'")
               for g in got)
    assert "profiles.people.edges.app: expected exactly one of 'stream' or 'query'" in got
    assert any(g.startswith("profiles.people.rules[1][0]: rule names identifier type "
                            "'phone'") for g in got)
    assert any(g.startswith("profiles.people.fields.name: rule 'source_priority' needs")
               for g in got)
    assert any(g.startswith("profiles.people.fields.plan.sources[0]: unknown edge 'web'")
               for g in got)
    assert any(g.startswith("profiles.people.fields.plan.rule: rule 'most_recent' needs")
               for g in got)


def test_schema_errors_name_the_path(tmp_path: Path) -> None:
    got = problems(tmp_path, """
profiles:
  people:
    identifiers: {email: {limit: 0}}
    edges:
      crm: {source: wh, stream: c, identifiers: {mail: email}, colour: red}
    fields: {x: {rule: newest}}
""")
    assert any(g.startswith("profiles.people.identifiers.email.limit:") for g in got)
    assert any(g.startswith("profiles.people.edges.crm: unknown key(s) 'colour'")
               for g in got)
    assert any(g.startswith("profiles.people.fields.x.rule: expected one of") for g in got)


def test_at_most_64_edges_per_set(tmp_path: Path) -> None:
    """docs/profiles.md: a profile set reads at most 64 edges."""
    edges = "\n".join(f"      e{i}: {{source: wh, stream: c, identifiers: {{mail: email}}}}"
                      for i in range(65))
    got = problems(tmp_path, f"""
profiles:
  people:
    identifiers: {{email: {{}}}}
    edges:
{edges}
""")
    assert any(g.startswith("profiles.people.edges:") and "64" in g for g in got), got

"""Reading conn.yml as the docs promise: every bad file is a configuration error (exit 3)
that names the file, the path and the line; an unset ${VAR} only fails the commands that
use its connector; the command line's own errors follow the same rules with --json."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conn.config import load_project
from conn.config.reader import MAX_VALUES
from conn.errors import ConfigError

from tests.cli.test_cli import run_cli
from tests.runtime.test_runtime import BASE_ROWS, PROJECT, people

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.fixture
def proj_dir(tmp_path: Path, registry, monkeypatch) -> Path:
    people(BASE_ROWS)
    (tmp_path / "conn.yml").write_text(PROJECT.replace("MODE", "upsert"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_duplicate_key_names_file_path_and_both_lines(tmp_path, registry):
    text = PROJECT.replace("MODE", "upsert") + """\
  people_to_crm:
    source: mem
    stream: people
    destination: crm
    object: contacts
    primary_key: id
"""
    (tmp_path / "conn.yml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path / "conn.yml", registry=registry)
    msg = str(e.value)
    assert str(tmp_path / "conn.yml") in msg
    assert e.value.path == "syncs.people_to_crm"
    assert "line 10 and line 22" in msg


def test_keys_next_to_a_merge_key_override_and_are_not_duplicates(tmp_path, registry):
    text = PROJECT.replace("MODE", "upsert").replace(
        "    config: {reject: [\"bad@example.com\"], batch_size: 2}",
        "    config:\n      <<: &cfg {batch_size: 2, reject: []}\n      batch_size: 3")
    (tmp_path / "conn.yml").write_text(text)
    proj = load_project(tmp_path / "conn.yml", registry=registry)
    assert proj.destinations["crm"].config == {"batch_size": 3, "reject": []}


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_project_fails_check(proj_dir, monkeypatch, capsys, text):
    (proj_dir / "conn.yml").write_text(text)
    code, _, err = run_cli(monkeypatch, capsys, "check", "--offline")
    assert code == 3
    assert str(proj_dir / "conn.yml") in err and "empty" in err


def test_random_bytes_name_the_file(proj_dir, monkeypatch, capsys):
    data = bytes(range(128, 256)) * 8192 + os.urandom(10 * 1024 * 1024 - 128 * 8192)
    (proj_dir / "conn.yml").write_bytes(data)
    code, _, err = run_cli(monkeypatch, capsys, "check")
    assert code == 3 and str(proj_dir / "conn.yml") in err
    assert "unexpected" not in err and "larger than" in err
    (proj_dir / "conn.yml").write_bytes(b"version: 1\n" + data[:100_000])
    code, _, err = run_cli(monkeypatch, capsys, "check")
    assert code == 3 and str(proj_dir / "conn.yml") in err
    assert "line 2, column 1: not UTF-8" in err and "unexpected" not in err


@pytest.mark.serial
def test_alias_bomb_is_refused_fast(proj_dir, monkeypatch, capsys):
    """9 ** 9 = 387 million values from 300 bytes; refused on the parser's events."""
    (proj_dir / "conn.yml").write_text(BOMB)
    t0 = time.perf_counter()
    code, _, err = run_cli(monkeypatch, capsys, "check")
    assert time.perf_counter() - t0 < 2
    assert code == 3 and str(proj_dir / "conn.yml") in err
    assert f"more than {MAX_VALUES:,} values" in err


@pytest.mark.parametrize(("text", "expect"), [
    ("a: &a [1, *a]\n", "alias *a refers to a value that contains it"),
    ("a: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64 levels"),
    ("a: !!int abc\n", "line 1, column 4: invalid YAML: cannot read this value"),
    ("a: !!python/object:os.system x\n", "could not determine a constructor"),
    ("a: 1\n---\nb: 2\n", "expected a single document"),
    ("a: \x00\n", "line 1, column 4: invalid YAML: character U+0000"),
    ("- 1\n- 2\n", "expected a mapping at the top level"),
])
def test_unreadable_yaml_is_a_config_error_with_its_line(tmp_path, registry, text, expect):
    (tmp_path / "conn.yml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path / "conn.yml", registry=registry)
    assert expect in str(e.value) and str(tmp_path / "conn.yml") in str(e.value)


@pytest.mark.parametrize(("text", "expect"), [
    ("'': 1\n0: 2\n", "unknown key(s)"),  # keys of mixed types once crashed the sort
    (PROJECT.replace("config: {reject", "config: {0: x, reject"), "unknown key(s) '0'"),
    (PROJECT.replace("  people_to_crm:", "  1:"), "name 1 is not text"),
    (PROJECT.replace("mode: MODE", "purposes: [[a], 1]"), "syncs.people_to_crm.purposes"),
])
def test_keys_and_values_of_any_yaml_type_are_config_errors(proj_dir, monkeypatch, capsys,
                                                            text, expect):
    """Found by the configuration fuzzer: each was an 'unexpected TypeError'."""
    (proj_dir / "conn.yml").write_text(text.replace("MODE", "upsert"))
    code, _, err = run_cli(monkeypatch, capsys, "check", "--offline")
    assert code == 3 and expect in err and "please report" not in err, err


UNSET = PROJECT.replace("MODE", "upsert").replace("syncs:", """\
  prod:
    type: recorder
    config: {token: "${CONN_TEST_UNSET_TOKEN}"}
syncs:""") + """\
  people_to_prod:
    source: mem
    stream: people
    destination: prod
    object: contacts
    primary_key: id
"""


def test_unset_variable_fails_only_the_commands_that_use_its_connector(
        proj_dir, monkeypatch, capsys):
    monkeypatch.delenv("CONN_TEST_UNSET_TOKEN", raising=False)
    (proj_dir / "conn.yml").write_text(UNSET)
    code, out, err = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--json")
    assert code == 0, err
    assert json.loads(out)["syncs"][0]["inserted"] == 3
    for args in (["runs"], ["rejected", "people_to_crm"], ["discover", "mem"],
                 ["preview", "people_to_crm"]):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0, (args, err)
    code, out, err = run_cli(monkeypatch, capsys, "sync", "mem", "prod", "--json")
    assert code == 3 and "CONN_TEST_UNSET_TOKEN is not set" in err
    assert json.loads(out)["error"]["path"] == "destinations.prod.config.token"
    code, out, _ = run_cli(monkeypatch, capsys, "check", "--offline", "--json")
    assert code == 3
    assert any("CONN_TEST_UNSET_TOKEN" in p for p in json.loads(out)["problems"])


def test_unset_variable_outside_connectors_fails_at_once(proj_dir, monkeypatch, capsys):
    monkeypatch.delenv("CONN_TEST_UNSET_QUERY", raising=False)
    (proj_dir / "conn.yml").write_text(PROJECT.replace("MODE", "upsert").replace(
        "    stream: people\n", "    stream: ${CONN_TEST_UNSET_QUERY}\n"))
    code, _, err = run_cli(monkeypatch, capsys, "runs")
    assert code == 3 and "syncs.people_to_crm.stream" in err


def test_unknown_plugin_type_exits_6(proj_dir, monkeypatch, capsys):
    (proj_dir / "conn.yml").write_text(PROJECT.replace("MODE", "upsert").replace(
        "type: recorder", "type: no_such_crm"))
    code, out, err = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--json")
    assert code == 6 and "no destination plugin of type 'no_such_crm'" in err
    assert json.loads(out)["error"]["exit_code"] == 6
    code, _, _ = run_cli(monkeypatch, capsys, "check", "--offline")
    assert code == 6
    # A missing plugin next to a plain configuration error: fix the configuration (3).
    (proj_dir / "conn.yml").write_text(PROJECT.replace("MODE", "often").replace(
        "type: recorder", "type: no_such_crm"))
    code, _, _ = run_cli(monkeypatch, capsys, "check", "--offline")
    assert code == 3


@pytest.mark.parametrize("args", [["sync", "mem", "crm"], ["runs"], ["discover", "mem"],
                                  ["rejected", "people_to_crm"], ["preview", "people_to_crm"],
                                  ["explain", "1"]])
def test_json_configuration_errors_print_a_json_object(proj_dir, monkeypatch, capsys, args):
    (proj_dir / "conn.yml").write_text(PROJECT.replace("MODE", "often"))
    code, out, err = run_cli(monkeypatch, capsys, *args, "--json")
    assert code == 3
    obj = json.loads(out)
    assert obj["ok"] is False and obj["error"]["exit_code"] == 3
    assert obj["error"]["file"] == str(proj_dir / "conn.yml")
    assert obj["error"]["path"] == "syncs.people_to_crm.mode"
    assert "syncs.people_to_crm.mode" in err


def test_json_usage_errors_print_a_json_object(proj_dir, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "mem", "--json")
    assert code == 2 and json.loads(out)["error"]["message"] == "Missing argument 'destination'."
    code, out, _ = run_cli(monkeypatch, capsys, "runs", "--json", "--limit", "x")
    assert code == 2 and json.loads(out)["ok"] is False


def test_unexpected_errors_with_json_print_a_json_object(proj_dir, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("conn.cli.project_cmds._store", boom)
    code, out, err = run_cli(monkeypatch, capsys, "runs", "--json")
    assert code == 1 and "disk on fire" in err
    assert json.loads(out)["error"]["type"] == "RuntimeError"


def test_version_and_short_help(monkeypatch, capsys):
    import conn

    code, out, _ = run_cli(monkeypatch, capsys, "--version")
    assert code == 0 and out == f"conn {conn.__version__}\n"
    code, out, _ = run_cli(monkeypatch, capsys, "-h")
    assert code == 0 and "Commands" in out and "sync" in out
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "-h")
    assert code == 0 and "--dry-run" in out
    code, out, _ = run_cli(monkeypatch, capsys, "singer", "tap", "-h")
    assert code == 0 and "--discover" in out

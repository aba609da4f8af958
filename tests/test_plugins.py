"""The plugin system: registration hooks, entry-point discovery of pip-installed packages,
broken and misspelled plugins, API versions, lazy loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
from conn import hookimpl
from conn.errors import PluginError
from conn.plugins import Registry, api_compatible

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "plugins"


def test_in_process_registration(registry):
    assert registry.source_class("memory").name == "memory"
    assert registry.destination_class("recorder").name == "recorder"
    assert "trim" in registry.transforms  # built-ins register through the same hook
    assert {"duckdb", "memory"} <= set(registry.state_backends)


def test_misspelled_hook_fails_loudly():
    mod = types.ModuleType("typo_plugin")

    @hookimpl
    def register_source(register):
        pass

    mod.register_source = register_source
    reg = Registry(autoload=False)
    with pytest.raises(PluginError, match="register_source"):
        reg.add_module(mod)


def test_plugin_api_version_is_checked():
    assert api_compatible("1.0", "1.3")
    assert not api_compatible("1.4", "1.3")
    assert not api_compatible("2.0", "1.9")
    mod = types.ModuleType("future_plugin")
    mod.CONN_PLUGIN_API = "9.0"
    with pytest.raises(PluginError, match=r"requires conn plugin API 9\.0"):
        Registry(autoload=False).add_module(mod)


def test_duplicate_connector_name_warns_and_keeps_first(registry):
    from tests import fakes

    class Other(fakes.MemorySource):
        pass

    mod = types.ModuleType("dup_plugin")

    @hookimpl
    def register_sources(register):
        register(Other)

    mod.register_sources = register_sources
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        registry.add_module(mod)
    assert registry.source_class("memory") is fakes.MemorySource
    assert any("ignored" in str(x.message) for x in w)


def test_unknown_type_error_lists_known(registry):
    with pytest.raises(PluginError, match="no destination plugin of type 'nope'") as err:
        registry.destination_class("nope")
    assert "install a plugin providing the destination type 'nope'" in str(err.value)


def test_missing_type_hint_names_the_distribution_that_provides_it():
    """The hint names a package that exists: the PostgreSQL destination comes with the
    source in conn-postgres (there is no conn-destination-postgres)."""
    reg = Registry(autoload=False)
    with pytest.raises(PluginError) as err:
        reg.destination_class("postgres")
    assert "install the package 'conn-postgres'" in str(err.value)
    assert "conn-destination-postgres" not in str(err.value)


def test_missing_type_hint_says_when_the_type_is_of_the_other_kind():
    reg = Registry(autoload=False)
    with pytest.raises(PluginError) as err:
        reg.destination_class("duckdb")
    assert "'duckdb' is a source type (from conn-source-duckdb), not a destination" \
        in str(err.value)


def test_first_party_table_matches_the_plugins_entry_points():
    """FIRST_PARTY (what the install hint names) is what plugins/*/*/pyproject.toml
    declare: every type of every first-party distribution, nothing else."""
    import tomllib

    from conn.plugins import FIRST_PARTY

    declared = {}
    for pj in sorted(ROOT.glob("plugins/*/*/pyproject.toml")):
        project = tomllib.loads(pj.read_text(encoding="utf-8"))["project"]
        for group, eps in project.get("entry-points", {}).items():
            kind = group.removeprefix("conn.")
            for name in eps:
                declared[(kind, name)] = project["name"]
    assert declared == FIRST_PARTY


# --- real packaging path: pip-install plugin packages into a fresh environment ---------


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the core and three fixture plugin packages:
    a working one, one whose import fails and one with a misspelled hook."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    uv = Path(sys.executable).parent / "uv"
    uv_cmd = [str(uv)] if uv.exists() else [sys.executable, "-m", "uv"]
    subprocess.run([*uv_cmd, "venv", "--quiet", "--python", sys.executable, str(venv)],
                   check=True)
    subprocess.run([*uv_cmd, "pip", "install", "--quiet", "--python",
                    str(venv / "bin" / "python"), "-e", str(ROOT),
                    str(FIXTURES / "conn-example"), str(FIXTURES / "conn-broken"),
                    str(FIXTURES / "conn-misspelled")], check=True)
    return venv


def run_conn(venv: Path, *args: str, cwd: Path | None = None, **env: str
             ) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("CONN_")}
    e.update(env)
    return subprocess.run([str(venv / "bin" / "conn"), *args], capture_output=True,
                          text=True, env=e, cwd=cwd, timeout=120)


@pytest.mark.slow
def test_pip_installed_plugin_is_discovered(plugin_venv):
    out = run_conn(plugin_venv, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    ex = plugins["example"]
    assert ex["distribution"] == "conn-example"
    assert ex["version"] == "1.2.3"
    assert ex["provides"] == ["source:example"]
    assert ex["hooks"] == ["register_sources"]
    assert ex["error"] is None


@pytest.mark.slow
def test_broken_plugins_warn_and_the_rest_work(plugin_venv):
    out = run_conn(plugin_venv, "plugins", "--json")
    assert out.returncode == 0
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    assert "a_module_that_does_not_exist" in plugins["broken"]["error"]
    assert "register_destination" in plugins["misspelled"]["error"]
    assert "failed to load and is skipped" in out.stderr


@pytest.mark.slow
def test_strict_mode_reraises(plugin_venv):
    out = run_conn(plugin_venv, "plugins", CONN_PLUGINS_STRICT="1")
    assert out.returncode == 6
    assert "broken" in out.stderr or "misspelled" in out.stderr


@pytest.mark.slow
def test_blocklist_skips_plugin(plugin_venv):
    out = run_conn(plugin_venv, "plugins", "--json", CONN_PLUGINS_BLOCK="conn-broken,misspelled")
    names = {p["name"] for p in json.loads(out.stdout)["plugins"]}
    assert "broken" not in names and "misspelled" not in names and "example" in names


@pytest.mark.slow
def test_command_loads_only_the_plugins_it_needs(plugin_venv, tmp_path):
    """`conn discover` of an `example` source works although broken plugins are installed,
    and never imports them (no warning about them)."""
    (tmp_path / "conn.yml").write_text(
        "version: 1\nsources:\n  nums:\n    type: example\n    config: {count: 3}\n")
    out = run_conn(plugin_venv, "discover", "nums", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["streams"][0]["stream"] == "numbers"
    assert "broken" not in out.stderr and "misspelled" not in out.stderr


@pytest.mark.slow
def test_misconfigured_plugin_error_names_plugin_and_path(plugin_venv, tmp_path):
    (tmp_path / "conn.yml").write_text(
        "version: 1\nsources:\n  nums:\n    type: example\n    config: {count: -1, "
        "api_key: sk-very-secret}\n")
    out = run_conn(plugin_venv, "discover", "nums", cwd=tmp_path)
    assert out.returncode == 3
    assert "sources.nums.config.count" in out.stderr
    assert "sk-very-secret" not in out.stderr + out.stdout


@pytest.mark.slow
def test_help_is_fast_and_imports_no_plugin(plugin_venv):
    code = ("import sys, time; t=time.perf_counter(); from conn.cli.main import app; "
            "print(sorted(m for m in sys.modules if m.startswith(('conn_', 'pyarrow', "
            "'duckdb'))))")
    out = subprocess.run([str(plugin_venv / "bin" / "python"), "-c", code],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

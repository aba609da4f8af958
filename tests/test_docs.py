"""The docs are tests: every conn.yml snippet in README.md, docs/ and the plugins' READMEs
passes ``conn check --offline``, and every ``conn ...`` command they show exists with the
options they give it.

A snippet that declares ``sources``, ``destinations`` and ``syncs`` is a whole project and
must pass as it is. Any other snippet is a fragment (only ``destinations:``, a sync whose
source is declared elsewhere): it may lack required keys and name connectors it does not
declare, and nothing else; every key it shows is checked (unknown keys, wrong values, each
plugin's own config schema). ``${VAR}`` references get fake values.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conn.cli.main import app
from conn.plugins import Registry, reset_registry

from tests.cli.test_cli import run_cli
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
               *(ROOT / "plugins").glob("*/*/README.md")])
FENCE = re.compile(r"^(```+)([\w-]*)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
#: Plugins the docs teach how to write: not installed, so their type is unknown here.
TAUGHT_PLUGINS = ("destinations.acme.type: no destination plugin of type 'acme_crm'",)
SCHEMA = json.loads((ROOT / "schemas" / "conn.schema.json").read_text())
PROJECT_KEYS = set(SCHEMA["properties"])
#: YAML blocks that are not conn.yml, recognised by a key only they have.
OTHER_FORMATS = {"project_id": "meltano.yml"}
#: The errors a fragment may have: what it leaves to the rest of the file.
FRAGMENT_ERRORS = re.compile(r"missing required key|unknown (source|destination|consent "
                             r"source|sync) |expected exactly one of 'stream' or 'query'")


def sync_keys() -> set[str]:
    syncs = SCHEMA["properties"]["syncs"]
    sync = syncs.get("additionalProperties") or next(iter(syncs["patternProperties"].values()))
    if "$ref" in sync:
        sync = SCHEMA["$defs"][sync["$ref"].rsplit("/", 1)[1]]
    return set(sync["properties"])


def blocks() -> Iterator[tuple[str, str, str]]:
    """(where, language, body) of every fenced block of the docs."""
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            yield f"{doc.relative_to(ROOT)}:{line}", m.group(2), m.group(3)


def conn_yml_snippets() -> list[tuple[str, str]]:
    out = []
    for where, lang, body in blocks():
        if lang not in ("yaml", "yml"):
            continue
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError:
            out.append((where, body))  # conn check says what is wrong with it
            continue
        assert isinstance(data, dict), f"{where}: a YAML block that is not a mapping"
        keys = set(data)
        if keys <= PROJECT_KEYS:
            out.append((where, body))
        elif keys <= sync_keys():
            indented = "".join(f"    {line}\n" for line in body.splitlines())
            out.append((where, f"syncs:\n  example:\n{indented}"))
        else:
            assert any(k in keys for k in OTHER_FORMATS), (
                f"{where}: a YAML block that is neither conn.yml nor a known other file "
                f"({', '.join(OTHER_FORMATS.values())}): keys {sorted(keys)}")
    return out


SNIPPETS = conn_yml_snippets()


@pytest.fixture
def real_plugins() -> Iterator[Registry]:
    """The installed plugins, as `conn` finds them (entry points)."""
    from conn.errors import PluginError

    reg = reset_registry(Registry(autoload=True))
    try:
        for name in ("duckdb", "postgres", "files", "singer"):
            reg.source_class(name)
        for name in ("files", "hubspot", "salesforce", "webhook", "singer"):
            reg.destination_class(name)
    except PluginError as exc:
        reset_registry(Registry(autoload=False))
        unavailable(f"the first-party plugins are not installed: {exc}")
    yield reg
    reset_registry(Registry(autoload=False))


def fake_env(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake value for every ``${VAR}``, shaped to pass the plugins' patterns (a URL for
    ``*_URL``; a token ending like a Mailchimp key's data centre, ``-us21``)."""
    for var in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)):
        value = ("postgresql://docs:fake-password@localhost:5432/docs" if "URL" in var
                 else "fake0docs0value0123456789abcdef-us21")
        monkeypatch.setenv(var, value)


@pytest.mark.parametrize(("where", "body"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_conn_yml_snippet_passes_conn_check(where, body, real_plugins, tmp_path,
                                            monkeypatch, capsys):
    fake_env(body, monkeypatch)
    (tmp_path / "conn.yml").write_text(body)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "check", "--offline", "--json")
    problems = [p.split(": ", 1)[1] for p in json.loads(out)["problems"]]  # less the file
    try:
        data = yaml.safe_load(body)
        whole = {"sources", "destinations", "syncs"} <= set(data)
    except yaml.YAMLError:
        data, whole = {}, True
    # A connector shown without `config:` leaves its plugin's settings to the reader.
    unshown = tuple(f"{kind}.{name}.config: " for kind in ("sources", "destinations")
                    for name, c in (data.get(kind) or {}).items()
                    if isinstance(c, dict) and "config" not in c)
    wrong = [p for p in problems
             if not (p.startswith(TAUGHT_PLUGINS)
                     or (not whole and (FRAGMENT_ERRORS.search(p) or p.startswith(unshown))))]
    assert not wrong, f"{where}: conn check --offline:\n" + "\n".join(wrong)
    if whole and not wrong and not problems:
        assert code == 0, err


# --- commands ------------------------------------------------------------------------

def _command_tree() -> Any:
    import typer

    return typer.main.get_command(app)


def shown_commands() -> list[tuple[str, str]]:
    """(where, command line) of every `conn ...` the docs show: lines of code blocks and
    inline code spans."""
    out = []
    for where, lang, body in blocks():
        body = body.replace("\\\n", " ")  # continued lines
        if lang == "" and not re.match(r"\s*(\$\s+)?conn\s", body):
            continue  # an unlabelled block is a usage block only if it starts with conn
        if lang not in ("", "bash", "sh", "shell", "console"):
            continue
        for line in body.splitlines():
            line = re.sub(r"^\s*(\$\s+)?", "", line)
            for part in re.split(r"&&|;|\|\s*(?=[a-z./]*conn\b)", line):
                m = re.match(r"\s*(?:exec\s+)?(?:\S*/)?conn(\s.*)?$", part)
                if m:
                    out.append((where, "conn" + (m.group(1) or "")))
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        text = FENCE.sub("", text)
        for m in re.finditer(r"`(conn(?: [^`]*)?)`", text):
            line = text.count("\n", 0, m.start()) + 1
            out.append((f"{doc.relative_to(ROOT)}:~{line}", m.group(1)))
    return out


def check_command(line: str) -> list[str]:
    """What is wrong with a documented command line: unknown (sub)commands, unknown
    options, more arguments than the command takes. Placeholders (SYNC, ...) are fine."""
    line = line.split(" #", 1)[0]
    line = re.sub(r"[\[\]]", " ", line).replace(" | ", " ").replace("...", " ")
    try:
        tokens = shlex.split(line)[1:]
    except ValueError as exc:
        return [f"cannot split: {exc}"]
    cmd, path = _command_tree(), ["conn"]
    while tokens and hasattr(cmd, "commands") and not tokens[0].startswith("-"):
        name = tokens.pop(0)
        if name not in cmd.commands:
            return [f"'{' '.join(path)}' has no command {name!r}"]
        cmd = cmd.commands[name]
        path.append(name)
    problems, positional = [], 0
    options = {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    options.update({"--help": None, "-h": None})
    if len(path) == 1:
        options["--version"] = None
    while tokens:
        tok = tokens.pop(0)
        if tok.startswith("-") and len(tok) > 1:
            name = tok.split("=", 1)[0]
            if name not in options:
                problems.append(f"'{' '.join(path)}' has no option {name}")
                continue
            param = options[name]
            takes_value = param is not None and not getattr(param, "is_flag", False) \
                and "=" not in tok
            if takes_value and tokens and not tokens[0].startswith("-"):
                tokens.pop(0)
        else:
            positional += 1
    if hasattr(cmd, "commands"):
        if positional:
            problems.append(f"'{' '.join(path)}' needs a command, got {positional} word(s)")
        return problems
    arguments = [p for p in cmd.params if p.param_type_name == "argument"]
    unbounded = any(p.nargs == -1 for p in arguments)
    if not unbounded and positional > sum(p.nargs for p in arguments):
        problems.append(f"'{' '.join(path)}' takes {len(arguments)} argument(s), the docs "
                        f"give {positional}")
    return problems


COMMANDS = shown_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 40 and any("singer target" in c for _, c in COMMANDS)


@pytest.mark.parametrize(("where", "line"), COMMANDS, ids=[f"{w} {c}" for w, c in COMMANDS])
def test_documented_command_exists(where: str, line: str) -> None:
    assert not check_command(line), f"{where}: `{line}`: {check_command(line)}"


@pytest.mark.parametrize("line", ["conn check hubspot", "conn rejections SYNC",
                                  "conn sync a b --no-such-option", "conn singer tep"])
def test_the_command_check_catches_what_it_should(line: str) -> None:
    assert check_command(line)


# --- what conn init writes ------------------------------------------------------------

def test_conn_init_project_and_its_commented_example_pass_check(real_plugins, tmp_path,
                                                                monkeypatch, capsys):
    """`conn init` writes a conn.yml with a commented example; uncommented, the example
    must be valid too (it once wrote HubSpot's `token:`, the plugin wants `access_token`)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "init", "fresh")
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "check", "--offline", "-p", "fresh")
    assert code == 0, err
    text = (tmp_path / "fresh" / "conn.yml").read_text()
    example = re.sub(r"^  # ", "  ", text.replace(": {}\n", ":\n"), flags=re.M)
    (tmp_path / "fresh" / "conn.yml").write_text(example.replace("syncs:\n", "syncs: {}\n"))
    fake_env(example, monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, "check", "--offline", "-p", "fresh")
    assert code == 0, err


def test_demo_project_passes_the_full_check(real_plugins, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "init", "--demo", "demo", "--customers",
                           "200")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "check", "-p", "demo", "--json")
    assert code == 0, (out, err)
    assert all(c["ok"] for c in json.loads(out)["checks"])

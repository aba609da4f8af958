"""Every hook is documented with its exact signature and has a test that calls it.

The hooks are read from ``core/conn/hookspecs.py`` (functions marked ``@hookspec``); the
documentation is ``docs/plugin-authoring.md`` (a ``### `name``` heading per hook followed
by its signature); the tests are ``tests/test_hooks.py`` (a ``test_<hook>`` per hook).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conn import hookspecs
from conn.plugins import Registry

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugin-authoring.md"
HOOK_TESTS = Path(__file__).resolve().parent / "test_hooks.py"


def _is_hookspec(node: ast.FunctionDef) -> bool:
    return any((isinstance(d, ast.Name) and d.id == "hookspec") or
               (isinstance(d, ast.Call) and isinstance(d.func, ast.Name)
               and d.func.id == "hookspec") for d in node.decorator_list)


def hook_signatures() -> dict[str, str]:
    """``{name: "name(args) -> returns"}`` for every hook, as written in hookspecs.py."""
    tree = ast.parse(Path(hookspecs.__file__).read_text(encoding="utf-8"))
    return {
        node.name: f"{node.name}({ast.unparse(node.args)}) -> {ast.unparse(node.returns)}"
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and _is_hookspec(node) and node.returns
    }


HOOKS = hook_signatures()


def test_every_hookspec_is_found() -> None:
    assert set(HOOKS) == set(Registry(autoload=False).hook_names())


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_documented_with_signature(hook: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^### `{hook}`\s*$(.*?)(?=^#{{1,3}} |\Z)", text, re.M | re.S)
    assert match, f"{DOC.name} has no '### `{hook}`' section"
    assert HOOKS[hook] in match.group(1), (
        f"the '{hook}' section of {DOC.name} does not show its signature {HOOKS[hook]!r}")


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_hook_has_a_test_calling_it(hook: str) -> None:
    tree = ast.parse(HOOK_TESTS.read_text(encoding="utf-8"))
    tests = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert f"test_{hook}" in tests, f"{HOOK_TESTS.name} has no test_{hook}"
    impls = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
             and any("hookimpl" in ast.unparse(d) for d in n.decorator_list)}
    assert hook in impls, f"{HOOK_TESTS.name} has no @hookimpl {hook} for the test to call"

"""conn's modules import only downward: the layers below, in the order data flows up
through them, with no cycle between packages (imports inside functions count; imports
for type checking only do not). Also: no core module grows past a size a reader can
hold in their head."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core" / "conn"

#: Each top-level module or package of ``conn`` and its layer: a module may import only
#: from strictly lower layers (and from itself).
LAYERS: dict[str, float] = {
    # foundations: no conn imports but each other's errors
    "errors": 0, "secrets": 0, "interrupt": 0, "duckdb_scan": 0, "speedups": 0,
    "schemas": 0, "hookspecs": 0,
    # Arrow values as Python objects for payloads (faster timestamps)
    "pyvalues": 0,
    # the threaded HTTP server `conn serve` and `conn ui` listen with
    "http_server": 0,
    "conn": 1, "plugins": 1,
    "config": 2,
    "plugin_base": 3,
    # what destinations acknowledged, and the kernels the planner checks before use
    "state": 4,
    # shared vocabulary of a sync: digests, the parsed mapping, the sync's context
    "digests": 5, "fields": 5, "sync_context": 5,
    "keys": 6, "idempotency": 6,
    # the sealed batches and requests: the bottom of the pipeline
    "pipeline": 7, "experiments": 7,
    # what conn forget keeps: identifiers' digests, the suppression check, receipts
    "privacy": 7,
    "source": 8, "consent": 8, "streaming": 8, "events": 8, "messages": 8,
    "mapping": 9, "destination": 9,
    # followed sources reconnecting (over conn.streaming's ChangeBatch)
    "reconnect": 9,
    # kits for plugin authors
    "http": 10, "sql": 10,
    # identity resolution: reads sources, normalises with the consent layer's rules
    "profiles": 10,
    # alerts on a run's outcome: rules, channels (over conn.http); the runner calls them
    "alerts": 10.5,
    # computed columns, audiences and triggers, applied before the gate
    "traits": 10,
    # the runner: every stage above, in order
    "runtime": 11,
    "singer": 12, "testing": 12, "builtins": 12, "demo": 12,
    # `conn serve`: runs the runner on schedules
    "serve": 12,
    # what a command does, as data: the CLI prints it, the UI serves it
    "ops": 12,
    "ui": 13,
    "singer_protocol": 13, "cli": 14,
}
#: A core module this long has more than one job (see the structure review).
MAX_LINES = 650


def _unit(path: Path) -> str:
    rel = path.relative_to(CORE).with_suffix("")
    return "conn" if rel.parts == ("__init__",) else rel.parts[0]


def _imports(path: Path) -> list[tuple[str, int]]:
    """conn's top-level modules imported by ``path`` at run time (line numbers)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for n in ast.walk(node))
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "conn" and len(parts) > 1 and parts[1] in LAYERS:
                out.append((parts[1], node.lineno))
    return out


def test_every_module_has_a_layer():
    units = {_unit(p) for p in CORE.rglob("*.py")}
    assert units <= set(LAYERS), f"give these a layer: {sorted(units - set(LAYERS))}"


def test_imports_go_down_only():
    wrong = []
    for path in sorted(CORE.rglob("*.py")):
        unit = _unit(path)
        for target, line in _imports(path):
            if target != unit and LAYERS[target] >= LAYERS[unit]:
                wrong.append(f"{path.relative_to(CORE)}:{line}: {unit} (layer "
                             f"{LAYERS[unit]}) imports {target} (layer {LAYERS[target]})")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(sorted(set(wrong)))


def test_no_core_module_is_too_long():
    long = {str(p.relative_to(CORE)): n for p in CORE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these by job: {long}"

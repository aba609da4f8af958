"""Configuration fuzzing: whatever conn.yml holds, conn answers with exit code 0, 3 (a
configuration error naming the file) or 6 (a missing plugin), never a traceback or an
"unexpected" error, in bounded time and memory.

In process (fast, many examples): random YAML structures, random mutations of a valid
project, random text and random bytes. In a subprocess, measured with ``os.wait4`` and
capped with resource limits: alias bombs, deep nesting, huge files.

``CONN_FUZZ_EXAMPLES`` sets the number of examples per in-process test (default 30, 6 in
the fast loop of a bare pytest); the long profile runs e.g. ``CONN_FUZZ_EXAMPLES=2000``.
The subprocess tests are marked slow (about 2 s each).
"""

from __future__ import annotations

import copy
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.test_cli import run_cli
from tests.conftest import examples
from tests.runtime.test_runtime import BASE_ROWS, PROJECT, people

EXAMPLES = int(os.environ.get("CONN_FUZZ_EXAMPLES", examples(30)))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
VALID = yaml.safe_load(PROJECT.replace("MODE", "upsert"))

#: Keys conn.yml uses, so random structures reach past the first schema check.
KEYS = ["version", "sources", "destinations", "syncs", "consent_sources", "state", "type",
        "config", "purposes", "policies", "source", "destination", "stream", "query",
        "object", "primary_key", "match_key", "mode", "mapping", "consent", "columns",
        "legal_basis", "subject", "personal", "batch_rows", "from", "transforms",
        "value_map", "template", "null", "mem", "crm", "people_to_crm", "token", "reject",
        "batch_size", "*", "email", "backend", "url"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(KEYS),
    st.text(max_size=20), st.sampled_from(["${CONN_FUZZ_UNSET}", "${HOME}", "${X:-d}",
                                           "upsert", "mirror", "marketing", "memory",
                                           "recorder", "people", "id"]),
    st.dates(), st.binary(max_size=8),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10), st.integers(-5, 5),
                 st.booleans(), st.none())
structures = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(keys, children, max_size=6)),
    max_leaves=40,
)


def check_answer(folder: Path, code: int, out: str, err: str) -> None:
    assert code in (0, 3, 6), (code, out, err)
    assert "Traceback" not in out + err and "please report it" not in err, err
    if code:
        assert str(folder / "conn.yml") in err, err


@pytest.fixture
def folder(tmp_path: Path, registry, monkeypatch) -> Path:
    people(BASE_ROWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONN_FUZZ_UNSET", raising=False)
    return tmp_path


def run_check(folder: Path, monkeypatch, capsys, data: bytes | str) -> None:
    path = folder / "conn.yml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    for args in (["check", "--offline"], ["runs", "--json"], ["sync", "mem", "crm"]):
        code, out, err = run_cli(monkeypatch, capsys, *args)
        check_answer(folder, code, out, err)


def dump(obj: Any) -> str:
    return yaml.dump(obj, allow_unicode=True, sort_keys=False)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS[:6]) | keys, structures, max_size=6))
def test_random_structures(folder, monkeypatch, capsys, data: dict) -> None:
    run_check(folder, monkeypatch, capsys, dump(data))


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


@FUZZ
@given(st.data())
def test_random_mutations_of_a_valid_project(folder, monkeypatch, capsys, data) -> None:
    """Replace, delete or add one value somewhere in a project that passes."""
    project = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths(project)))
        parent: Any = project
        for part in where[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if not where:
            project = data.draw(structures)
            break
        if action == "delete" and isinstance(parent, dict):
            parent.pop(where[-1], None)
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(keys)] = data.draw(structures)
        else:
            parent[where[-1]] = data.draw(structures)
    run_check(folder, monkeypatch, capsys, dump(project))


@FUZZ
@given(st.text(max_size=300))
def test_random_text(folder, monkeypatch, capsys, text: str) -> None:
    run_check(folder, monkeypatch, capsys, text)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(folder, monkeypatch, capsys, data: bytes) -> None:
    run_check(folder, monkeypatch, capsys, data)


# --- bombs and huge files, measured in a subprocess ----------------------------------

#: Bounds for one `conn check` of a hostile file: conn's own start-up (~1 s, ~110 MB:
#: Python, typer, jsonschema, pyarrow) plus a margin on a shared two-core machine.
MAX_SECONDS = 15
MAX_RSS_MB = 250


def laughs(levels: int, fan: int, merge: bool = False) -> str:
    names = [f"l{i}" for i in range(levels)]
    out = f"{names[0]}: &{names[0]} [{', '.join(['lol'] * fan)}]\n"
    for prev, name in itertools.pairwise(names):
        if merge:
            items = ", ".join(f"k{j}: *{prev}" for j in range(fan))
            out += f"{name}: &{name} {{<<: {{a: *{prev}}}, {items}}}\n"
        else:
            out += f"{name}: &{name} [{', '.join([f'*{prev}'] * fan)}]\n"
    return out


HOSTILE: dict[str, bytes] = {
    "billion laughs": laughs(10, 10).encode(),
    "laughs through merge keys": laughs(9, 9, merge=True).encode(),
    "one big list aliased many times":
        (b"a: &a [" + b", ".join([b"x"] * 20000) + b"]\nb: ["
         + b", ".join([b"*a"] * 2000) + b"]\n"),
    "recursive alias": b"a: &a {b: *a}\n",
    "deep nesting": b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "deep block nesting": "".join(f"{'  ' * i}k{i}:\n" for i in range(5000)).encode(),
    "10 MB of random bytes": os.urandom(10 * 1024 * 1024),
    "3.9 MB of random bytes": os.urandom(4_000_000),
    "a 3.9 MB string": b"version: 1\nq: '" + b"x" * 4_000_000 + b"'\n",
    "3.9 MB of keys": b"".join(b"k%d: 1\n" % i for i in range(400_000))[:4_000_000],
    "100 MB sparse file": b"",
}


#: What the child runs: it caps its own address space at 4 GB (a preexec_fn would run
#: between fork and exec, unsafe in a parent with threads such as DuckDB's: the child
#: segfaulted), runs conn, and at exit writes its own peak resident memory (VmHWM) to
#: the file named by its first argument (``wait4``'s ``ru_maxrss`` also counts what a
#: large parent, such as a pytest run, held when it forked).
CHILD = """
import atexit, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
peak_file = sys.argv.pop(1)

def peak():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(peak)
from conn.cli.main import entry
entry()
"""


def run_limited(folder: Path, args: list[str]) -> tuple[int, str, float, float]:
    """Run conn in a subprocess with its address space capped at 4 GB (so a runaway
    cannot take the machine); its exit code, output, wall time and peak resident memory
    (MB, the child's own VmHWM; ``wait4``'s figure when the child could not write it)."""
    peak_file = folder.parent / f"{folder.name}-peak-kb"
    peak_file.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as output:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(peak_file), *args],
                                cwd=folder, stdout=output, stderr=subprocess.STDOUT)
        timer = threading.Timer(120, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    peak_kb = int(peak_file.read_text()) if peak_file.is_file() else usage.ru_maxrss
    return proc.returncode, text, seconds, peak_kb / 1024


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.serial
def test_hostile_files_are_refused_in_bounded_time_and_memory(tmp_path, name):
    path = tmp_path / "conn.yml"
    if name == "100 MB sparse file":
        with open(path, "wb") as f:
            f.truncate(100 * 1024 * 1024)
    else:
        path.write_bytes(HOSTILE[name])
    code, text, seconds, rss = run_limited(tmp_path, ["check", "--offline"])
    print(f"{name}: exit {code}, {seconds:.2f} s, {rss:.0f} MB")
    assert code == 3, text
    assert str(path) in text and "Traceback" not in text and "please report" not in text
    assert seconds < MAX_SECONDS, f"{name}: {seconds:.1f} s"
    assert rss < MAX_RSS_MB, f"{name}: {rss:.0f} MB"

"""A project for the UI's tests: the in-process fakes (tests/fakes.py), some people the
destination rejects, and the UI app over it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conn.plugins import Registry
from conn.ui.app import Response, UiApp
from conn.ui.guard import Guard

from tests.runtime.test_runtime import PROJECT, people

PORT = 8711
HOST = f"127.0.0.1:{PORT}"
#: The recorder refuses these e-mails (see tests/fakes.py): their keys are 7 and 23.
REJECTED = {7: "bad7@example.com", 23: "bad23@example.com"}


def roster(n: int = 40, rename: str = "") -> list[tuple[int, str, str, bool]]:
    """``n`` people; every fifth has not opted in; 7 and 23 have e-mails the
    destination rejects; ``rename`` is appended to every name (a changed row)."""
    return [(i, REJECTED.get(i, f"person{i}@example.com"), f"Person {i}{rename}", i % 5 != 0)
            for i in range(1, n + 1)]


def project_text() -> str:
    rejects = json.dumps(sorted(REJECTED.values()))
    return PROJECT.replace("MODE", "upsert").replace(
        'config: {reject: ["bad@example.com"], batch_size: 2}',
        f"config: {{reject: {rejects}, batch_size: 10, token: \"${{UI_TEST_TOKEN}}\"}}")


@pytest.fixture
def ui_project(tmp_path: Path, registry, monkeypatch) -> Path:
    monkeypatch.setenv("UI_TEST_TOKEN", "tok-9f8e7d6c5b4a-secret")
    people(roster())
    (tmp_path / "conn.yml").write_text(project_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def app(ui_project: Path, registry) -> UiApp:
    return UiApp(ui_project / "conn.yml", registry, Guard(PORT))


Call = Callable[..., tuple[int, Any]]


def call(app: UiApp, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request as the page makes it (Host, CSRF and JSON body type for POST)."""
    h = {"Host": HOST}
    if method == "POST":
        h |= {"Content-Type": "application/json", "X-Conn-CSRF": app.guard.csrf,
              "Origin": f"http://{HOST}", "Sec-Fetch-Site": "same-origin"}
    h |= headers or {}
    resp: Response = app.handle(method, path, h, b"" if body is None else
                                json.dumps(body).encode())
    ctype = resp.content_type
    return resp.status, json.loads(resp.body) if ctype == "application/json" else resp.body


def _conn(folder: Path, env: dict[str, str], *args: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "conn.cli.main", *args], cwd=folder,
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode in (0, 4), (args, out.stderr[-2000:])  # 4: rows rejected


def _sql(folder: Path, sql: str, *params: str) -> None:
    import duckdb

    con = duckdb.connect(str(folder / "warehouse.duckdb"))
    try:
        con.execute(sql, list(params))
    finally:
        con.close()


#: The demo's customers whose health drops between two runs of its trigger's sync.
DROPPED = (11, 12, 13)
#: A web visitor alone in the first profile build, tied before the second to the device
#: of an app user of their own (``MERGING_DEVICE``): the two profiles merge. (A device
#: of the demo's customers could be shared through other visitors with another
#: customer, and docs/profiles.md refuses such a join as a whole.)
MERGING = "anon-merge-7"
MERGING_DEVICE = "dev-merge-7"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """``conn init --demo`` (300 customers) after a run of its holdout sync (an
    experiment), two profile builds (the second merges two profiles), and two runs of
    its trigger's sync into a loopback webhook, between which three customers' health
    drops (three events fired and delivered)."""
    import os

    from conn.testing.http import FaultServer

    folder = tmp_path_factory.mktemp("demo")
    with FaultServer() as hook:
        env = {**os.environ, "ALERTS_URL": hook.url + "/alerts"}
        _conn(folder, env, "init", "--demo", str(folder), "--customers", "300")
        _sql(folder, "INSERT INTO web_sessions VALUES (999998, ?, NULL)", MERGING)
        _sql(folder, "INSERT INTO app_users VALUES (999998, 'mia.merge@example.com', ?, "
             "'Mia', 'DE', true, now())", MERGING_DEVICE)
        _conn(folder, env, "sync", "warehouse", "crm")
        _conn(folder, env, "profiles", "build")
        _conn(folder, env, "sync", "warehouse", "alerts")
        ids = ", ".join(str(i) for i in DROPPED)
        _sql(folder, f"INSERT INTO product_events SELECT 900000000 + c * 10 + n, c, "
             f"'feature_failed', now(), NULL, NULL FROM (SELECT unnest([{ids}]) AS c), "
             f"range(4) t(n)")
        _sql(folder, "INSERT INTO web_sessions VALUES (999999, ?, ?)", MERGING,
             MERGING_DEVICE)
        _conn(folder, env, "sync", "warehouse", "alerts")
        _conn(folder, env, "profiles", "build")
        assert len([r for r in hook.requests if r.path == "/alerts"]) >= 1
    return folder


@pytest.fixture
def demo_registry() -> Iterator[Registry]:
    """The installed plugins (the demo reads DuckDB, writes files and a webhook), for
    the UI and the in-process CLI alike."""
    from conn.plugins import reset_registry

    reg = Registry()
    reset_registry(reg)
    yield reg
    reset_registry(Registry(autoload=False))


@pytest.fixture
def demo_app(demo: Path, demo_registry: Registry) -> UiApp:
    return UiApp(demo / "conn.yml", demo_registry, Guard(PORT))

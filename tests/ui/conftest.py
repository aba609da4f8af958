"""A project for the UI's tests: the in-process fakes (tests/fakes.py), some people the
destination rejects, and the UI app over it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
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

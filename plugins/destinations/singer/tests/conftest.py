"""Fixtures: real Singer connectors in cached virtual environments (built once with uv under
``<repo>/.venvs/singer-connectors/<name>``, reused afterwards; override the directory with
``CONN_SINGER_VENVS``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
VENVS = Path(os.environ.get("CONN_SINGER_VENVS", ROOT / ".venvs" / "singer-connectors"))
FIXTURES = Path(__file__).parent / "fixtures"


def _uv() -> str | None:
    local = ROOT / ".venv" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def connector_venv(name: str, *requirements: str) -> Path:
    """A virtual environment holding ``requirements`` (created once, then reused)."""
    venv = VENVS / name
    marker = venv / ".conn-ready"
    want = "\n".join(requirements)
    if marker.exists() and marker.read_text() == want:
        return venv
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == want:
            return venv
        uv = _uv()
        py = venv / "bin" / "python"
        if uv:
            if not py.exists():
                subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                               check=True)
            subprocess.run([uv, "pip", "install", "--quiet", "--python", str(py),
                            *requirements], check=True)
        else:
            if not py.exists():
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", *requirements], check=True)
        marker.write_text(want)
    return venv


@pytest.fixture(scope="session")
def target_jsonl() -> Path:
    """``target-jsonl`` from PyPI (a singer-python target)."""
    return connector_venv("target-jsonl", "target-jsonl") / "bin" / "target-jsonl"


@pytest.fixture(scope="session")
def target_csv() -> Path:
    """``meltanolabs-target-csv`` from PyPI (a singer-sdk target)."""
    return connector_venv("meltanolabs-target-csv", "meltanolabs-target-csv") / "bin" / "target-csv"


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """A Python with singer-sdk, to run the in-suite fixture target."""
    return connector_venv("singer-sdk", "singer-sdk") / "bin" / "python"


@pytest.fixture(scope="session")
def edge_target(sdk_python: Path) -> list[str]:
    return [str(sdk_python), str(FIXTURES / "edge_target.py")]


@pytest.fixture(autouse=True)
def _clean_secrets():
    from conn import secrets

    yield
    with contextlib.suppress(Exception):
        secrets.clear()

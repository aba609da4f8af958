"""conn.testing.singer: cached connector venvs for Singer tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conn.testing import singer


def test_venvs_dir_defaults_under_the_root_and_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("CONN_SINGER_VENVS", raising=False)
    assert singer.connector_venvs_dir(tmp_path) == tmp_path / ".venvs" / "singer-connectors"
    monkeypatch.setenv("CONN_SINGER_VENVS", str(tmp_path / "elsewhere"))
    assert singer.connector_venvs_dir(tmp_path) == tmp_path / "elsewhere"


def test_a_ready_venv_is_reused_without_installing(tmp_path, monkeypatch):
    monkeypatch.setenv("CONN_SINGER_VENVS", str(tmp_path))
    ready = tmp_path / "tap-x" / singer.READY_MARKER
    ready.parent.mkdir()
    ready.write_text("tap-x\nsinger-sdk")

    def no_install(*args, **kwargs):
        raise AssertionError("nothing should be installed")

    monkeypatch.setattr(subprocess, "run", no_install)
    assert singer.connector_venv("tap-x", "tap-x", "singer-sdk", root=Path("/nowhere")) == \
        tmp_path / "tap-x"
    with pytest.raises(AssertionError, match="nothing should be installed"):
        singer.connector_venv("tap-x", "tap-y", root=Path("/nowhere"))


def test_importing_it_is_light():
    code = ("import sys; import conn.testing.singer; "
            "print(sorted(m for m in ('pytest', 'pyarrow', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"

"""The API reference (docs/api/) is what the docstrings say: regenerate it with
``make api-docs`` when this fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_api_reference_is_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "api_docs.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_guide_links_the_reference() -> None:
    guide = (ROOT / "docs" / "plugin-authoring.md").read_text(encoding="utf-8")
    for page in ("api/conn.http.md", "api/conn.testing.http.md", "api/conn.destination.md"):
        assert f"]({page})" in guide, page

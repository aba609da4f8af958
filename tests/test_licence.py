"""Every distribution (the core, each plugin, conn-speedups) ships the project's licence
text: pyproject.toml says Apache-2.0 and names the LICENSE file next to it, which is the
repository's own."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_distribution_ships_the_licence():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    plugins = (p.parent for p in ROOT.glob("plugins/*/*/pyproject.toml"))
    projects = [ROOT, ROOT / "speedups", *plugins]
    assert len(projects) > 10
    for folder in projects:
        meta = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        assert meta["license"] == "Apache-2.0", folder
        assert meta.get("license-files") == ["LICENSE"], folder
        assert (folder / "LICENSE").read_text() == text, folder

"""Real Singer connectors for tests, installed into cached virtual environments.

A connector (a tap or target from PyPI, or singer-sdk to run an in-suite fixture) is
installed once with uv (pip when uv is missing) under
``<root>/.venvs/singer-connectors/<name>`` and reused by later runs and by parallel test
processes (a file lock guards each build). Set ``CONN_SINGER_VENVS`` to keep them
elsewhere.

Only the standard library is imported here; nothing is installed until
:func:`connector_venv` is called (typically from a session-scoped fixture).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: Written into a venv once its requirements are installed; holds the requirements.
READY_MARKER = ".conn-ready"


def connector_venvs_dir(root: Path) -> Path:
    """Where connector venvs live: ``$CONN_SINGER_VENVS``, else
    ``<root>/.venvs/singer-connectors`` (``root``: the repository's top directory)."""
    return Path(os.environ.get("CONN_SINGER_VENVS", root / ".venvs" / "singer-connectors"))


def find_uv(root: Path) -> str | None:
    """The uv executable: the repository's ``.venv/bin/uv`` if present, else on PATH."""
    local = root / ".venv" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def connector_venv(name: str, *requirements: str, root: Path) -> Path:
    """A virtual environment named ``name`` holding ``requirements`` (created once, then
    reused while its requirements stay the same); returns its directory."""
    venvs = connector_venvs_dir(root)
    venv = venvs / name
    marker = venv / READY_MARKER
    want = "\n".join(requirements)
    if marker.exists() and marker.read_text() == want:
        return venv
    venvs.mkdir(parents=True, exist_ok=True)
    with open(venvs / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == want:
            return venv
        uv = find_uv(root)
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

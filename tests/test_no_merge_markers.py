"""No tracked file holds a merge's conflict markers (two docs pages once did: nothing
else catches them in prose)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(rb"^(<<<<<<< |>>>>>>> )", re.M)


def test_no_conflict_markers() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    bad = [f.decode() for f in files if f and (ROOT / f.decode()).is_file()
           and MARKER.search((ROOT / f.decode()).read_bytes())]
    assert bad == []

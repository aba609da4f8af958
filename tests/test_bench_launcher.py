"""The benchmarks measure each command's own peak memory, whatever the size of the
process running the benchmark (``ru_maxrss`` of a child counts what it inherited from its
parent before ``exec``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.common import run_child


@pytest.mark.slow
def test_a_command_reports_its_own_peak_from_a_large_parent():
    big = np.ones(600 * 1024 * 1024 // 8)  # 600 MB touched in this process
    # Why: measured straight from this process, /bin/true "peaks" at this process's size.
    # posix_spawn, not Popen: os.wait4 reaps the child, which a Popen would not know.
    pid = os.posix_spawn("/bin/true", ["/bin/true"], os.environ)
    _, _, rusage = os.wait4(pid, 0)
    assert rusage.ru_maxrss / 1024 > 500
    _, own, _ = run_child(["/bin/true"])
    _, python, _ = run_child([sys.executable, "-c", "b = bytearray(200 * 1024 * 1024)"])
    assert big.sum() > 0
    assert own < 40, f"/bin/true reported {own:.0f} MB"
    assert 200 <= python < 260, f"a 200 MB child reported {python:.0f} MB"


def test_the_launcher_ends_with_the_process_that_started_it():
    # Why: CI printed "ResourceWarning: subprocess ... is still running" at a worker's exit.
    code = "from bench.common import run_child; run_child(['/bin/true'])"
    proc = subprocess.run([sys.executable, "-W", "always::ResourceWarning", "-c", code],
                          capture_output=True, text=True, check=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert "ResourceWarning" not in proc.stderr, proc.stderr

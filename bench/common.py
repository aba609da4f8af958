"""Shared helpers of the benchmarks: seeded data, timing with peak memory, result tables.

Every scenario runs in a child process, started by a small launcher process so that its
peak memory (max RSS) is its own (see :class:`Launcher`);
figures are medians of several runs after a warm-up, and ratios are taken between sides
measured in the same invocation (these machines are shared and noisy).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"


@dataclass
class Measurement:
    """One side of a comparison: median wall time and peak RSS over ``runs``."""

    name: str
    rows: int
    seconds: list[float] = field(default_factory=list)
    max_rss_mb: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.median_s if self.seconds and self.median_s > 0 else 0.0

    @property
    def peak_mb(self) -> float:
        return statistics.median(self.max_rss_mb) if self.max_rss_mb else float("nan")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(median_s=self.median_s, rows_per_s=self.rows_per_s, peak_mb=self.peak_mb)
        return d


def measure(name: str, rows: int, argv: Sequence[str], *, runs: int = 3, warmup: int = 1,
            env: dict[str, str] | None = None, cwd: Path | None = None,
            shell: bool = False, note: str = "") -> Measurement:
    """Median of ``runs`` after ``warmup`` runs of a child command."""
    m = Measurement(name, rows, note=note)
    for i in range(warmup + runs):
        wall, rss, _ = run_child(argv, env=env, cwd=cwd, shell=shell)
        if i >= warmup:
            m.seconds.append(wall)
            m.max_rss_mb.append(rss)
    return m


def run_child(argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None, shell: bool = False) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS in MB, stdout). The peak is that of
    the command's own process (for a shell pipeline: the largest process's), measured by
    :class:`Launcher` so that it never includes the memory of this process."""
    return launcher().run(argv, env=env, cwd=cwd, shell=shell)


_LAUNCHER_CODE = r"""
import json, os, subprocess, sys, tempfile, time
for line in sys.stdin:
    job = json.loads(line)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(job["cmd"], shell=job["shell"], stdout=out, stderr=err,
                                env=job["env"], cwd=job["cwd"])
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        reply = {"wall": wall, "maxrss_kb": rusage.ru_maxrss,
                 "code": os.waitstatus_to_exitcode(status),
                 "stdout": out.read().decode(errors="replace"),
                 "stderr": err.read().decode(errors="replace")[-4000:]}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


class Launcher:
    """A small process that starts each measured command and reports its wall time and
    peak RSS (``wait4``).

    A child's ``ru_maxrss`` counts the memory it inherited from its parent before
    ``exec``: Linux copies the parent's high-water mark into the forked copy and records
    it at ``exec``. Started from a benchmark holding 600 MB of data, ``/bin/true``
    reported 614 MB, and every side of one ``full_sync`` run (Singer's included) the same
    573 MB. Forked from this launcher, whose own address space is a bare interpreter
    (about 10 MB, whatever the process that started it held), a command's peak is its
    own, plus at most the launcher's size."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER_CODE],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None,
            cwd: Path | None = None, shell: bool = False) -> tuple[float, float, str]:
        """See :func:`run_child`."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        # Children may write bytecode caches (this machine sets PYTHONDONTWRITEBYTECODE,
        # which would make every run compile every imported module: not what users see).
        child_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cmd: Any = " ".join(argv) if shell else list(argv)
        job = {"cmd": cmd, "shell": shell, "env": {**child_env, **(env or {})},
               "cwd": str(cwd) if cwd is not None else None}
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        reply = json.loads(self._proc.stdout.readline())
        if reply["code"] != 0:
            raise RuntimeError(f"{cmd} failed ({reply['code']}): {reply['stderr'][-2000:]}")
        return reply["wall"], reply["maxrss_kb"] / 1024, reply["stdout"]

    def close(self) -> None:
        """End the launcher (it ends when its input does)."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


_launcher: Launcher | None = None


def launcher() -> Launcher:
    """The benchmark's launcher (started on first use; start it early with this call)."""
    global _launcher
    if _launcher is None:
        _launcher = Launcher()
        # Ended with the process that started it, not left to the interpreter's exit,
        # which warns of a subprocess still running (once per CI run, from a test).
        atexit.register(_launcher.close)
    return _launcher


def environment() -> dict[str, Any]:
    import pyarrow

    info = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "pyarrow": pyarrow.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        import duckdb

        info["duckdb"] = duckdb.__version__
    except ImportError:
        pass
    return info


def print_table(title: str, rows: list[list[Any]], columns: list[str]) -> None:
    print(f"\n## {title}")
    widths = [max(len(str(c)), *(len(_fmt(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    sys.stdout.flush()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if v < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path

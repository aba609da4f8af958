"""conn's command line run in the test's own process (faster than a subprocess, and
the test's registry and monkeypatches apply): the exit code as a shell would see it,
and what the command printed."""

from __future__ import annotations

import sys

import pytest


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *args: str) -> tuple[int, str, str]:
    """Run ``conn ARGS``: (exit code, stdout, stderr)."""
    from conn.cli.main import main

    monkeypatch.setattr(sys, "argv", ["conn", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err

"""The command line as people run it: JSON output, exit codes, redaction, help."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import fakes
from tests.cli_in_process import run_cli
from tests.conftest import unavailable
from tests.runtime.test_runtime import BASE_ROWS, PROJECT, people


@pytest.fixture
def proj_dir(tmp_path: Path, registry, monkeypatch) -> Path:
    people(BASE_ROWS)
    (tmp_path / "conn.yml").write_text(PROJECT.replace("MODE", "upsert"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sync_json_has_the_documented_keys(proj_dir, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--json")
    assert code == 0
    s = json.loads(out)["syncs"][0]
    for key in ("name", "rows_read", "consent_denied", "inserted", "updated", "deleted",
                "unchanged", "rejected", "status"):
        assert key in s
    assert (s["rows_read"], s["consent_denied"], s["inserted"]) == (4, 1, 3)


def test_rejections_exit_4_and_are_listed(proj_dir, monkeypatch, capsys):
    people([*BASE_ROWS, (9, "bad@example.com", "Bad", True)])
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    assert code == 4
    assert "INVALID_EMAIL" in out and "conn rejected people_to_crm" in out
    code, out, _ = run_cli(monkeypatch, capsys, "rejected", "people_to_crm", "--json")
    assert code == 0 and json.loads(out)["rejected"][0]["key"] == 9  # typed, as in the source
    code, out, _ = run_cli(monkeypatch, capsys, "runs", "--json")
    assert code == 0 and len(json.loads(out)["runs"]) == 1


def test_plain_output_when_piped(proj_dir, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    assert code == 0
    header, row = out.strip().splitlines()[:2]
    assert header.split("\t")[:3] == ["sync", "status", "read"]
    assert row.split("\t")[:3] == ["people_to_crm", "ok", "4"]


def test_config_error_exit_3_names_path(proj_dir, monkeypatch, capsys):
    (proj_dir / "conn.yml").write_text(PROJECT.replace("MODE", "often"))
    code, _, err = run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    assert code == 3
    assert "syncs.people_to_crm.mode" in err


def test_unknown_destination_name(proj_dir, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "sync", "mem", "nowhere")
    assert code == 3 and "no destination named 'nowhere'" in err


def test_secret_never_printed(proj_dir, monkeypatch, capsys):
    monkeypatch.setenv("MEM_TOKEN", "s3cr3t-token-value")
    text = PROJECT.replace("MODE", "upsert").replace(
        "mem: {type: memory}",
        'mem: {type: memory, config: {token: "${MEM_TOKEN}", fail_check: true}}')
    (proj_dir / "conn.yml").write_text(text)
    code, out, err = run_cli(monkeypatch, capsys, "check", "--json")
    assert code == 7
    assert "s3cr3t-token-value" not in out + err
    assert "***" in out


def test_check_reports_every_mapping_problem(proj_dir, monkeypatch, capsys):
    text = PROJECT.replace("MODE", "upsert").replace("      name: name\n",
                                                     "      name: no_such_column\n")
    (proj_dir / "conn.yml").write_text(text)
    code, out, _ = run_cli(monkeypatch, capsys, "check", "--json")
    assert code == 3
    problems = json.loads(out)["problems"]
    assert any("syncs.people_to_crm.mapping.name" in p for p in problems)


def test_dry_run_shows_requests(proj_dir, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--dry-run", "--json")
    assert code == 0
    s = json.loads(out)["syncs"][0]
    assert s["status"] == "dry_run" and s["preview"]
    assert fakes.RECEIVED == []


def test_help_answers_quickly():
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "conn.cli.main", "sync", "--help"],
                         capture_output=True, text=True, check=True)
    assert time.perf_counter() - t < 5  # generous: a smoke check, timing lives in bench/
    assert "Exit codes" in out.stdout and "--dry-run" in out.stdout


def test_ctrl_c_during_a_sync_says_what_was_kept_and_exits_130(proj_dir, monkeypatch,
                                                               capsys):
    """Regression: typer turned the interrupt into a silent exit 130."""
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fakes.RecordingDestination, "write_batch", interrupted)
    code, _, err = run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    assert code == 130
    assert "interrupted" in err and "pending" in err


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@pytest.fixture
def fast_exit(monkeypatch):
    """entry()'s process exit and atexit run, recorded instead of done."""
    import conn.cli.main as cli

    calls: list[str] = []

    def os_exit(code: int) -> None:
        calls.append("exit")
        raise _Exited(code)

    monkeypatch.setattr(cli.os, "_exit", os_exit)
    monkeypatch.setattr(cli.atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    import gc

    thresholds = gc.get_threshold()
    yield cli, calls
    gc.set_threshold(*thresholds)


@pytest.mark.parametrize(("raised", "code"), [(None, 0), (SystemExit(4), 4),
                                              (SystemExit(None), 0), (SystemExit("no"), 1)])
def test_entry_runs_atexit_then_exits_with_mains_code(fast_exit, monkeypatch, capsys,
                                                      raised, code):
    cli, calls = fast_exit
    # (other tests' HTTP servers may leave request threads behind in this process)
    monkeypatch.setattr(cli.threading, "active_count", lambda: 1)

    def fake_main() -> None:
        print("report")
        if raised is not None:
            raise raised

    monkeypatch.setattr(cli, "main", fake_main)
    with pytest.raises(_Exited) as got:
        cli.entry()
    assert got.value.code == code
    assert calls == ["atexit", "exit"]
    import gc

    assert gc.get_threshold()[0] == 50_000  # start-up's imports: few young collections
    out = capsys.readouterr()
    assert out.out == "report\n"
    assert out.err == ("no\n" if raised is not None and raised.code == "no" else "")


def test_entry_waits_for_other_threads_with_the_normal_exit(fast_exit, monkeypatch):
    import threading

    cli, calls = fast_exit
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        monkeypatch.setattr(cli, "main", lambda: None)
        with pytest.raises(SystemExit) as got:
            cli.entry()
        assert got.value.code == 0 and calls == []
    finally:
        release.set()
        worker.join()


def test_console_script_exit_codes_and_output(tmp_path: Path):
    """The installed ``conn`` script (fast exit): output arrives, codes mean the same."""
    exe = Path(sys.executable).parent / "conn"
    if not exe.exists():
        unavailable("the conn console script is not installed next to this Python")
    ok = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0 and "sync" in ok.stdout
    (tmp_path / "conn.yml").write_text("version: 1\nsources: [oops]\n")
    bad = subprocess.run([str(exe), "check"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 3 and "conn.yml" in bad.stderr + bad.stdout

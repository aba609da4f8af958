"""Ctrl-C and SIGTERM stop a run within seconds, keep what was acknowledged, and the run
is listed as interrupted; a second Ctrl-C exits at once without a traceback. A run
refused for its configuration never started, so it is not in the run history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_webhook")

PROJECT = """\
version: 1
sources:
  warehouse: {{type: duckdb, config: {{path: warehouse.duckdb}}}}
destinations:
  hook:
    type: webhook
    config: {{url: "{url}", check: none, batch_size: 10, concurrency: 1, timeout: 120,
              objects: [{{name: people, identifiers: [id]}}]}}
syncs:
  people:
    source: warehouse
    stream: customers
    destination: hook
    object: people
    primary_key: id
    mapping: {{id: id{extra}}}
"""


class Hanging:
    """Answers the first ``fast`` requests, then hangs until released."""

    def __init__(self, fast: int) -> None:
        self.fast, self.seen = fast, 0
        self.release = threading.Event()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                me.seen += 1
                if me.seen > me.fast:
                    me.release.wait(60)
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def conn(cwd: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conn.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


@pytest.fixture
def receiver():
    r = Hanging(fast=3)
    yield r
    r.close()


def _project(path: Path, url: str, extra: str = "") -> None:
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute("CREATE TABLE customers AS SELECT i AS id FROM range(100) t(i)")
    con.close()
    (path / "conn.yml").write_text(PROJECT.format(url=url, extra=extra))


def _start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "conn.cli.main", "sync", "warehouse",
                             "hook"], cwd=path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(cond, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.serial
def test_ctrl_c_while_the_destination_hangs_exits_within_seconds(tmp_path, receiver):
    _project(tmp_path, receiver.url)
    proc = _start(tmp_path)
    _wait_for(lambda: receiver.seen > receiver.fast)  # now a request hangs
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - started
    assert proc.returncode == 130, err
    assert took < 15, f"took {took:.1f} s to stop"
    assert "Traceback" not in err
    assert "stopping" in err
    runs = json.loads(conn(tmp_path, "runs", "--json").stdout)["runs"]
    assert [r["status"] for r in runs] == ["interrupted"]
    assert runs[0]["inserted"] == 30  # the three answered requests are kept
    receiver.release.set()
    again = conn(tmp_path, "sync", "warehouse", "hook", "--json")
    assert again.returncode == 0, again.stderr
    s = json.loads(again.stdout)["syncs"][0]
    assert (s["inserted"], s["unchanged"]) == (70, 30)


@pytest.mark.slow
@pytest.mark.serial
def test_a_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path, receiver):
    _project(tmp_path, receiver.url)
    proc = _start(tmp_path)
    _wait_for(lambda: receiver.seen > receiver.fast)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert proc.returncode == 130
    assert "Traceback" not in err and "exiting now" in err


@pytest.mark.slow
@pytest.mark.serial
def test_sigterm_stops_like_ctrl_c(tmp_path, receiver):
    _project(tmp_path, receiver.url)
    proc = _start(tmp_path)
    _wait_for(lambda: receiver.seen > receiver.fast)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.serial
def test_a_run_refused_for_its_configuration_is_not_recorded(tmp_path, receiver):
    _project(tmp_path, receiver.url, extra=", nope: no_such_column")
    done = conn(tmp_path, "sync", "warehouse", "hook")
    assert done.returncode == 3 and "no_such_column" in done.stderr
    assert json.loads(conn(tmp_path, "runs", "--json").stdout)["runs"] == []

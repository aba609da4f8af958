"""The real commands in subprocesses: ``conn ui`` serves the API and refuses to listen
beyond loopback without a token; ``conn serve`` serves the UI on its own port and skips a
sync paused through it, while its other syncs keep running."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from conn.testing.http import FaultServer

from tests.serve.helpers import Serve, conn, env, make_project

pytestmark = pytest.mark.slow
pytest.importorskip("conn_source_duckdb")
pytest.importorskip("conn_destination_webhook")
pytest.importorskip("conn_destination_files")


def request(url: str, method: str = "GET", headers: dict | None = None,
            body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def csrf_of(page: bytes) -> str:
    m = re.search(rb'name="conn-csrf" content="([^"]+)"', page)
    assert m, page[:300]
    return m.group(1).decode()


def test_conn_ui_serves_the_api_of_the_project(tmp_path):
    with FaultServer() as srv:
        make_project(tmp_path, srv.url, rows=5)
        assert conn(tmp_path, "sync", "warehouse", "files").returncode == 0
        proc = subprocess.Popen([sys.executable, "-m", "conn.cli.main", "ui", "--port", "0"],
                                cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            url = re.search(r"(http://127\.0\.0\.1:\d+)/", line).group(1)  # type: ignore[union-attr]
            code, body = request(url + "/api/syncs/to_files/runs")
            assert code == 200
            assert [r["status"] for r in json.loads(body)["runs"]] == ["ok"]
            assert request(url + "/api/syncs", headers={"Host": "evil.example"})[0] == 403
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)  # closes the pipes too
        assert proc.returncode == 0, err


def test_conn_ui_beyond_loopback_needs_a_token(tmp_path):
    with FaultServer() as srv:
        make_project(tmp_path, srv.url, rows=1)
    res = conn(tmp_path, "ui", "--host", "0.0.0.0", "--port", "0")
    assert res.returncode == 3 and "--token" in res.stderr


@pytest.mark.serial
def test_conn_serve_serves_the_ui_and_skips_a_sync_paused_there(tmp_path):
    with FaultServer() as srv:
        make_project(tmp_path, srv.url, rows=5)
        serve = Serve(tmp_path)
        try:
            base = f"http://127.0.0.1:{serve.port}"
            serve.wait_for(lambda: serve.named("run_finished", sync="to_files", status="ok"))
            code, page = request(base + "/")
            assert code == 200 and b"/static/app.js" in page
            headers = {"Content-Type": "application/json", "X-Conn-CSRF": csrf_of(page)}
            code, _ = request(base + "/api/syncs/to_files/pause", "POST", headers, {})
            assert code == 200
            paused_at = len(serve.lines)
            serve.wait_for(lambda: serve.named("run_finished", sync="to_files",
                                               status="paused"))
            # Meanwhile the other sync keeps its schedule.
            hooks = len(serve.named("run_finished", sync="to_hook"))
            serve.wait_for(lambda: len(serve.named("run_finished", sync="to_hook")) > hooks)
            after = [json.loads(x) for x in serve.lines[paused_at:]]
            assert not [e for e in after if e["event"] == "run_finished"
                        and e["sync"] == "to_files" and e["status"] == "ok"]
            code, body = request(base + "/api/syncs")
            by_name = {s["name"]: s for s in json.loads(body)["syncs"]}
            assert by_name["to_files"]["paused"] and not by_name["to_hook"]["paused"]
            assert request(base + "/api/syncs/to_files/resume", "POST", headers, {})[0] == 200
            resumed = time.monotonic()
            serve.wait_for(lambda: [e for e in serve.events[paused_at:]
                                    if e["event"] == "run_finished" and e["sync"] == "to_files"
                                    and e["status"] == "ok"])
            assert time.monotonic() - resumed < 10
            assert serve.get("/healthz")[0] == 200
        finally:
            exit_code, _ = serve.stop()
        assert exit_code == 0

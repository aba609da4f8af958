"""Running the real ``conn serve`` in a subprocess: its event lines, its endpoints, its
exit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
from prometheus_client.parser import text_string_to_metric_families

PROJECT = """\
version: 1
sources:
  warehouse: {{type: duckdb, config: {{path: warehouse.duckdb}}}}
destinations:
  files: {{type: files, config: {{path: out, objects: {{people: {{identifiers: [id]}}}}}}}}
  hook:
    type: webhook
    config:
      url: "{url}/hook"
      check: none
      batch_size: 10
      concurrency: 1
      timeout: 60
      max_attempts: 1
      headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
      objects: [{{name: people, identifiers: [id]}}]
syncs:
  to_files:
    source: warehouse
    stream: customers
    destination: files
    object: people
    primary_key: id
    mapping: {{id: id, name: name}}
    schedule: {{every: {files_every}}}
  to_hook:
    source: warehouse
    stream: customers
    destination: hook
    object: people
    primary_key: id
    mapping: {{id: id, name: name}}
    schedule: {{every: {hook_every}}}
  by_hand:
    source: warehouse
    stream: customers
    destination: files
    object: people
    primary_key: id
    mapping: {{id: id}}
"""
#: The destination's credential: it must never be printed.
TOKEN = "tok-7c1e9f0a55d2-secret"


def make_project(path: Path, url: str, rows: int = 30, *, files_every: str = "1s",
                 hook_every: str = "1s") -> None:
    con = duckdb.connect(str(path / "warehouse.duckdb"))
    con.execute(f"CREATE TABLE customers AS SELECT i AS id, 'n' || i AS name "
                f"FROM range({rows}) t(i)")
    con.close()
    (path / "conn.yml").write_text(PROJECT.format(url=url, files_every=files_every,
                                                  hook_every=hook_every))


def env() -> dict[str, str]:
    return {**os.environ, "HOOK_TOKEN": TOKEN, "CONN_LOG_LEVEL": "WARNING"}


def conn(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conn.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env())


class Serve:
    """``conn serve --port 0`` in ``cwd``; its stdout lines (events) as they come."""

    def __init__(self, cwd: Path, *args: str, json_lines: bool = True) -> None:
        self.json_lines = json_lines
        cmd = [sys.executable, "-m", "conn.cli.main", "serve", "--port", "0", *args]
        if json_lines:
            cmd.append("--json")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, out), daemon=True)
                         for s, out in ((self.proc.stdout, self.lines),
                                        (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def events(self) -> list[dict[str, Any]]:
        """The event lines so far. An error that ``--json`` prints indented over several
        lines is skipped here; :meth:`wait_for` shows it whole when the process exits."""
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def named(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event
                and all(e.get(k) == v for k, v in match.items())]

    def wait_for(self, cond: Callable[[], Any], seconds: float = 30) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            got = cond()
            if got:
                return got
            if self.proc.poll() is not None:
                self.join()
                raise AssertionError(f"conn serve exited {self.proc.returncode}:\n"
                                     + "\n".join(self.lines + self.err))
            assert time.monotonic() < deadline, "timed out:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    @property
    def port(self) -> int:
        if self.json_lines:
            return int(self.wait_for(lambda: self.named("serving"))[0]["port"])
        line = self.wait_for(lambda: [x for x in self.lines if " serving " in x])[0]
        return int(re.search(r" port=(\d+)", line).group(1))  # type: ignore[union-attr]

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def metrics(self) -> dict[tuple[str, tuple], float]:
        code, body = self.get("/metrics")
        assert code == 200
        out = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def join(self, seconds: float = 30) -> int:
        code = self.proc.wait(seconds)
        for t in self._readers:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code

    def stop(self, sig: int = signal.SIGTERM, seconds: float = 30) -> tuple[int, float]:
        """Send ``sig``; the exit code and how long the process took to exit."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.join(seconds)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.join()  # also when it exited by itself: reaps it and closes its pipes


def metric(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)

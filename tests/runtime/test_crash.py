"""Crash safety: SIGKILL a large sync at many random points, then run it to completion.

A DuckDB warehouse of 100,000 customers syncs through the consent gate to the webhook
destination, which posts to a recording HTTP server on loopback. After every kill the
test reads what the state file holds as acknowledged; at the end it asserts that every
row that should have arrived arrived, that no row acknowledged in state was ever sent
again, and that the state equals what the destination holds.

It also proves the delivery guarantee of docs/sync-modes.md: a kill re-sends at most the
requests that were in flight, at most ``concurrency`` requests of ``batch_size`` records,
whatever the source batch size, and every re-sent record carries the idempotency key it
was first sent with (the receiver answered every request it got, so every record it got
twice is a re-send).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("conn_destination_webhook")
pytest.importorskip("conn_source_duckdb")

KILLS = 20
SEED = 20261124
BATCH_SIZE = 100
CONCURRENCY = 2


class Recorder:
    """Receives webhook posts; remembers (run, key, email) of every record, and the
    idempotency key it first came with and every one it came with later."""

    def __init__(self) -> None:
        self.run = 0
        self.lock = threading.Lock()
        self.receipts: list[tuple[int, str, str]] = []
        self.first_key: dict[str, str] = {}
        self.changed_key: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(0.01)  # a destination that takes a moment, like a real API
                with recorder.lock:
                    keys = body.get("idempotency_keys") or [None] * len(body["records"])
                    for r, ikey in zip(body["records"], keys, strict=True):
                        key = str(r["customer_id"])
                        recorder.receipts.append((recorder.run, key, r.get("email", "")))
                        if recorder.first_key.setdefault(key, ikey) != ikey:
                            recorder.changed_key.append(key)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed mid-request: exactly what is under test

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


PROJECT = """\
version: 1
sources:
  warehouse: {{type: duckdb, config: {{path: warehouse.duckdb}}}}
destinations:
  hook:
    type: webhook
    purposes: [marketing]
    config:
      url: {url}
      secret: crash-test-signing-secret
      batch_size: {batch_size}
      concurrency: {concurrency}
      objects: [{{name: customers, identifiers: [customer_id]}}]
syncs:
  customers_to_hook:
    source: warehouse
    stream: customers
    destination: hook
    object: customers
    primary_key: customer_id
    match_key: customer_id
    mode: upsert
    batch_rows: {batch_rows}
    consent: {{columns: {{marketing: marketing_opt_in}}}}
    mapping:
      customer_id: customer_id
      email: email
      plan: plan
"""


def acknowledged(state_file: Path) -> dict[str, str]:
    """Keys (and match values) the state file holds as acknowledged, read as conn would
    after folding its change log."""
    if not state_file.exists():
        return {}
    con = duckdb.connect(str(state_file), read_only=True)
    try:
        rows = con.execute("""
            WITH last AS (SELECT ch.*, c.op, c.mv_is_key, row_number() OVER
                          (PARTITION BY kid ORDER BY seq DESC) AS rn
                          FROM changes ch JOIN commits c USING (seq))
            SELECT key, match_value FROM acknowledged WHERE kid NOT IN (SELECT kid FROM last)
            UNION ALL SELECT key, CASE WHEN mv_is_key THEN key ELSE match_value END
            FROM last WHERE rn = 1 AND op = 1""").fetchall()
    finally:
        con.close()
    return dict(rows)


def resends_per_kill(receipts: list[tuple[int, str, str]], kills: int) -> list[int]:
    """For each killed run, how many records it got to the receiver that a later run
    sent again."""
    later: set[str] = set()
    out = [0] * kills
    for run in range(kills, -1, -1):
        got = {k for r, k, _ in receipts if r == run}
        if run < kills:
            out[run] = len(got & later)
        later |= got
    return out


def conn_cmd() -> list[str]:
    return [sys.executable, "-m", "conn.cli.main", "sync", "warehouse", "hook"]


@pytest.mark.slow
@pytest.mark.serial
def test_sigkill_at_random_points_loses_nothing_and_resends_nothing_acknowledged(tmp_path):
    from conn.demo import build_warehouse

    build_warehouse(tmp_path / "warehouse.duckdb", 100_000, seed=7)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    expected = {str(k) for (k,) in con.execute(
        "SELECT customer_id FROM customers WHERE marketing_opt_in").fetchall()}
    con.close()
    state_file = tmp_path / ".conn" / "state" / "customers_to_hook.duckdb"
    rng = random.Random(SEED)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    acked_after: list[dict[str, str]] = []
    with Recorder() as server:
        (tmp_path / "conn.yml").write_text(PROJECT.format(
            url=server.url, batch_size=BATCH_SIZE, concurrency=CONCURRENCY,
            batch_rows=20_000))
        # Kill points: a few during start-up (by time), the rest after a random number of
        # records reached the destination (by progress), so every kill lands mid-run
        # whatever the machine's speed, at a different place of the delivery each time.
        for i in range(KILLS):
            server.run = i
            before = len(server.receipts)
            by_time = rng.random() < 0.2
            target = rng.randint(1, 3000)
            proc = subprocess.Popen(conn_cmd(), cwd=tmp_path, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + (rng.uniform(0.05, 1.0) if by_time else 120)
            while time.monotonic() < deadline and proc.poll() is None:
                if not by_time and len(server.receipts) - before >= target:
                    break
                time.sleep(0.002)
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"run {i} ended before its kill (exit {proc.returncode}): "
                            f"{err.decode()[-2000:]}")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            acked_after.append(acknowledged(state_file))
        server.run = KILLS
        done = subprocess.run([*conn_cmd(), "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)["syncs"][0]
        final = acknowledged(state_file)

    receipts = server.receipts
    assert len(acked_after) == KILLS
    assert 0 < len(acked_after[-1]) < len(expected), "the kills landed mid-run"
    received = {k for _, k, _ in receipts}
    assert received == expected, "every consented row arrives, and nothing else"
    for i, acked in enumerate(acked_after):
        resent = {k for run, k, _ in receipts if run > i} & set(acked)
        assert not resent, f"{len(resent)} rows acknowledged before kill {i} sent again"
    assert set(final) == received, "state equals the destination's content"
    # The delivery guarantee: a kill re-sends at most the requests in flight.
    resent = resends_per_kill(receipts, KILLS)
    print(f"\nre-sent records per kill: {resent} (total {sum(resent)}, "
          f"{sum(resent) / len(expected):.1%} of {len(expected)}; bound "
          f"{CONCURRENCY * BATCH_SIZE} per kill)")
    assert max(resent) <= CONCURRENCY * BATCH_SIZE, resent
    assert not server.changed_key, "a re-sent record came with another idempotency key"
    assert all(final[k] == k for k in final)  # match key is customer_id
    assert report["status"] == "ok" and report["rejected"] == 0
    # A final run sends nothing.
    again = subprocess.run([*conn_cmd(), "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    s = json.loads(again.stdout)["syncs"][0]
    assert (s["inserted"], s["updated"], s["unchanged"]) == (0, 0, len(expected))

"""PostgreSQL commit → webhook receiver latency of a streaming sync (``conn sync --follow``).

Creates a table ``feature_failed`` (unique name), starts ``conn sync app hook --follow``
on a project that follows it through a logical replication slot into the webhook
destination, whose receiver is a loopback HTTP server in this process. Then inserts
``--events`` rows, one transaction each, at ``--rate`` per second, notes the time each
commit returned, and the time each record reached the receiver; prints p50, p95, p99 and
the maximum of (arrival - commit), and saves them to ``bench/results/``. The slot,
publication and table are dropped at the end.

    .venv/bin/python bench/pg_stream.py --events 300 --rate 50
    .venv/bin/python bench/pg_stream.py --events 300 --rate 50 --max-latency-ms 100

Needs the local PostgreSQL with ``wal_level = logical`` (scripts/ensure-services.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, print_table, save

URL = "postgresql://postgres@127.0.0.1:5432/test"


class Receiver:
    """Loopback webhook receiver: the first arrival time of every record id."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.time()
                with receiver.lock:
                    for r in body.get("records", []):
                        receiver.arrived.setdefault(int(r["id"]), now)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--rate", type=float, default=50.0, help="inserts per second")
    ap.add_argument("--max-latency-ms", type=int, default=None,
                    help="the sync's max_latency_ms (default: conn's default)")
    args = ap.parse_args()

    import psycopg2

    tag = uuid.uuid4().hex[:8]
    table, slot = f"feature_failed_{tag}", f"bench_{tag}"
    db = psycopg2.connect(URL)
    db.autocommit = True
    cur = db.cursor()
    cur.execute(f'CREATE TABLE "{table}" (id bigint PRIMARY KEY, customer_id int, '
                "event text, created_at timestamptz DEFAULT now())")
    receiver = Receiver()
    folder = Path(tempfile.mkdtemp(prefix="conn-pg-stream-"))
    sync: dict[str, Any] = {"source": "app", "stream": table, "destination": "hook",
                            "object": "events", "match_key": "id", "mode": "upsert",
                            "mapping": {"id": "id", "customer_id": "customer_id",
                                        "event": "event"}}
    if args.max_latency_ms:
        sync["max_latency_ms"] = args.max_latency_ms
    project = {"version": 1,
               "sources": {"app": {"type": "postgres", "config": {
                   "url": URL, "tables": [table], "replication": {"slot": slot}}}},
               "destinations": {"hook": {"type": "webhook",
                                         "config": {"url": receiver.url}}},
               "syncs": {"feature_failed_to_hook": sync}}
    (folder / "conn.yml").write_text(json.dumps(project))
    conn_bin = str(Path(sys.executable).with_name("conn"))
    proc = subprocess.Popen([conn_bin, "sync", "app", "hook", "--follow", "-p", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    commits: dict[int, float] = {}
    try:
        deadline = time.monotonic() + 90
        while True:
            # Streaming once a replication connection holds the slot (while the slot is
            # created, the creating session holds it: changes then precede its start).
            cur.execute("SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r "
                        "ON r.pid = s.active_pid WHERE s.slot_name = %s", (slot,))
            if cur.fetchall() == [(1,)]:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the follower did not start: {proc.stderr.read().decode()}")
            time.sleep(0.1)
        t0 = time.monotonic()
        for i in range(args.events):
            due = t0 + i / args.rate
            time.sleep(max(0.0, due - time.monotonic()))
            cur.execute(f'INSERT INTO "{table}" (id, customer_id, event) '
                        "VALUES (%s, %s, 'feature_failed')", (i, i % 97))
            commits[i] = time.time()
        deadline = time.monotonic() + 60
        while len(receiver.arrived) < args.events and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        alive = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        receiver.httpd.shutdown()
        for _ in range(50):
            cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            if cur.fetchall() != [(True,)]:
                break
            time.sleep(0.1)
        cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s", (slot,))
        cur.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
        cur.execute(f'DROP TABLE IF EXISTS "{table}"')
        db.close()
    lat = [receiver.arrived[i] - commits[i] for i in commits if i in receiver.arrived]
    lost = args.events - len(lat)
    if lost or not alive:
        missing = sorted(set(commits) - set(receiver.arrived))
        print(f"follower {'running' if alive else 'exited'}; missing ids {missing[:20]}; "
              f"its stderr: {err.decode()[-2000:]}", file=sys.stderr)
    span = max(commits.values()) - min(commits.values())
    achieved = round((len(commits) - 1) / span) if span > 0 else 0
    row = [args.events, args.rate, achieved, args.max_latency_ms or "default",
           round(percentile(lat, 50), 3), round(percentile(lat, 95), 3),
           round(percentile(lat, 99), 3), round(max(lat), 3), lost]
    print_table("PostgreSQL commit -> webhook receiver (seconds)", [row],
                ["events", "rate/s", "committed/s", "max_latency_ms", "p50", "p95", "p99",
                 "max", "lost"])
    save("pg_stream", {"environment": environment(), "events": args.events,
                       "rate": args.rate, "committed_per_s": achieved,
                       "max_latency_ms": args.max_latency_ms,
                       "p50": percentile(lat, 50), "p95": percentile(lat, 95),
                       "p99": percentile(lat, 99), "max": max(lat),
                       "mean": statistics.mean(lat), "lost": lost,
                       "command": " ".join(sys.argv)})
    os.environ.pop("CONN_PROJECT", None)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

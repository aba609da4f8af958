"""The webhook's writers alone: CPU of the sending process per 100-record request, with
httpx's own transport (httpcore) and with ``conn.http.KeepAliveTransport``, at one and at
four writers, measured in the same run.

    .venv/bin/python bench/webhook_writers.py              # 5 runs of 10,000 records each
    .venv/bin/python bench/webhook_writers.py --runs 3 --records 5000

The webhook (conn-destination-webhook, installed in this Python) delivers a request of
``--records`` rows (an id, two strings and a UTC timestamp, as ``bench/pg_stream.py``'s
table) through ``Destination.deliver``: the runtime's chunking into ``batch_size`` requests
and its writer threads. The receiver is conn's fault server without faults
(``conn.testing.http.FaultServer``) in its own process, so its CPU is not counted. CPU
is this process's user + system time (``time.process_time``) over the delivery, divided
by the requests sent. This is the part of a follower's cost that ``bench/pg_stream.py``'s
floods spend on the writers (docs/performance.md, ``pg_stream``); no goal of its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import environment, print_table, save  # noqa: E402


def _serve(port: int) -> None:
    """conn's fault server (no faults: it answers each batch at once), in this process."""
    import threading

    from conn.testing.http import FaultServer

    with FaultServer(port=port):
        threading.Event().wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_per_request(url: str, records: int, concurrency: int, keep_alive: bool,
                    runs: int) -> list[float]:
    """CPU µs per request of ``runs`` deliveries of ``records`` rows (after a warm-up)."""
    import pyarrow as pa
    from conn.testing.harness import make_request
    from conn_destination_webhook.destination import WebhookDestination

    dest = WebhookDestination({"url": url, "batch_size": 100, "concurrency": concurrency},
                              instance="bench")
    if not keep_alive:
        dest.client_options = {"transport": None}  # httpx's own (httpcore)
    table = pa.table({
        "id": pa.array(range(records)),
        "customer_id": [f"c{i % 5000}" for i in range(records)],
        "event": ["feature_failed"] * records,
        "created_at": pa.array([1_765_100_000_123_456 + i for i in range(records)],
                               pa.int64()).cast(pa.timestamp("us", "UTC")),
    })
    out = []
    for i in range(runs + 1):
        request = make_request(dest, "events", table, match_key="id")
        t0 = time.process_time()
        for _ in dest.deliver(request):
            pass
        if i:  # the first run warms the connections up
            out.append((time.process_time() - t0) / (records / 100) * 1e6)
    dest.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="2 runs of 2,000 records")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.records = 2, 2_000
    port = _free_port()
    server = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    server.start()
    time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/hook"
    results: dict[str, list[float]] = {}
    try:
        # Alternated, run by run, so a noisy machine moves every side alike.
        sides = [(c, k) for c in (1, 4) for k in (False, True)]
        for _ in range(args.runs):
            for c, k in sides:
                name = f"{'keep-alive' if k else 'httpcore'} x{c}"
                results.setdefault(name, []).extend(
                    cpu_per_request(url, args.records, c, k, 1))
    finally:
        server.terminate()
    rows = []
    for c in (1, 4):
        base = statistics.median(results[f"httpcore x{c}"])
        for k in (False, True):
            name = f"{'keep-alive' if k else 'httpcore'} x{c}"
            med = statistics.median(results[name])
            rows.append([name, c, round(med), round(med / base, 2)])
    print_table("webhook writers: CPU µs per 100-record request (medians)", rows,
                ["transport", "writers", "cpu µs/request", "vs httpcore"])
    path = save("webhook_writers", {"environment": environment(), "args": vars(args),
                                    "runs": results})
    print(f"\nresults written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

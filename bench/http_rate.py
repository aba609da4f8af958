"""Rate-limit efficiency: records per second a destination achieves under a vendor's
documented rate limit, divided by the theoretical maximum (rate x batch size).

    .venv/bin/python bench/http_rate.py            # HubSpot Professional, 3 runs (~30 s)
    .venv/bin/python bench/http_rate.py --quick    # one short run (~4 s)
    .venv/bin/python bench/http_rate.py --json out.json   # also write the result dict
    .venv/bin/python bench/http_rate.py --requests 100 --per-seconds 10 --batch 100

The webhook destination (conn-destination-webhook, installed in this Python) writes
through the runtime's delivery path (``conn.testing.harness.write_records``: the final
``Destination.write`` chunking and worker threads) to conn's local fault server
(127.0.0.1), which enforces the same limit as a token bucket (burst 2) and answers 429
beyond it. The destination is configured with the documented limit, so its shared rate
limiter paces every worker. Default limit: HubSpot Professional/Enterprise, 190 requests
per 10 s with batch upserts of 100 inputs (docs/destination-apis: HubSpot rate limits).

Achieved = records / (time from the first request to the last acknowledgement);
efficiency = achieved / (rate x batch). Goal: ≥ 0.95, with no 429. Figures are medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(requests: int, per_seconds: float, batch: int, seconds: float, concurrency: int,
            error_rate: float) -> dict[str, float]:
    """Send ``seconds`` worth of the rate's requests; return the figures of the run."""
    import pyarrow as pa
    from conn.testing.harness import write_records
    from conn.testing.http import FaultServer
    from conn_destination_webhook.destination import WebhookDestination

    rate = requests / per_seconds
    n_requests = max(2, round(rate * seconds))
    n = n_requests * batch
    records = pa.RecordBatch.from_pydict({
        "id": [str(i) for i in range(n)],
        "email": [f"user{i}@example.com" for i in range(n)],
        "score": [i % 100 / 10 for i in range(n)],
    })
    with FaultServer(seed=1, rate_limit=rate, rate_burst=2, error_rate=error_rate,
                     retry_after=None) as srv:
        dest = WebhookDestination({
            "url": srv.url + "/hook", "secret": "bench-signing-secret",
            "batch_size": batch, "concurrency": concurrency, "retry_base_delay": 0.05,
            "rate_limit": {"requests": requests, "per_seconds": per_seconds},
            "objects": ["contacts"],
        }, instance="bench")
        t0 = time.perf_counter()
        result = write_records(dest, "contacts", records)
        elapsed = time.perf_counter() - t0
        stats = dict(dest.client.stats)
        dest.close()
        assert not result.pending and not result.rejected, result.error
        srv.assert_exactly_once(str(i) for i in range(n))
        throttled = srv.statuses[429]
    achieved = n / elapsed
    theoretical = rate * batch
    return {"records": n, "requests": stats["requests"], "seconds": elapsed,
            "achieved": achieved, "theoretical": theoretical,
            "efficiency": achieved / theoretical, "throttled": throttled,
            "retries": stats["retries"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=190, help="requests per window (190)")
    p.add_argument("--per-seconds", type=float, default=10.0, help="window in seconds (10)")
    p.add_argument("--batch", type=int, default=100, help="records per request (100)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of one run (8)")
    p.add_argument("--runs", type=int, default=3, help="runs; the median is reported (3)")
    p.add_argument("--concurrency", type=int, default=4, help="destination workers (4)")
    p.add_argument("--error-rate", type=float, default=0.0,
                   help="fraction of requests answered 503 (default 0)")
    p.add_argument("--quick", action="store_true", help="one 3-second run")
    p.add_argument("--json", type=Path, help="write the result dict here")
    a = p.parse_args(argv)
    if a.quick:
        a.runs, a.seconds = 1, 3.0
    sys.path.insert(0, str(ROOT / "plugins" / "destinations" / "webhook"))
    rate = a.requests / a.per_seconds
    print(f"limit {a.requests} requests / {a.per_seconds:g} s = {rate:g} req/s, batch "
          f"{a.batch}, concurrency {a.concurrency}, {a.runs} run(s) of ~{a.seconds:g} s"
          + (f", {a.error_rate:.0%} injected 503s" if a.error_rate else ""))
    runs = []
    for i in range(a.runs):
        r = one_run(a.requests, a.per_seconds, a.batch, a.seconds, a.concurrency,
                    a.error_rate)
        runs.append(r)
        print(f"  run {i + 1}: {r['records']:,} records in {r['requests']:.0f} requests, "
              f"{r['seconds']:.2f} s, {r['achieved']:,.0f} rec/s, efficiency "
              f"{r['efficiency']:.3f}, 429s {r['throttled']}, retries {r['retries']:.0f}")
    med = statistics.median(r["efficiency"] for r in runs)
    ach = statistics.median(r["achieved"] for r in runs)
    theo = runs[0]["theoretical"]
    print(f"median: {ach:,.0f} records/s of {theo:,.0f} theoretical "
          f"(rate x batch) = efficiency {med:.3f} (goal ≥ 0.95) "
          f"{'OK' if med >= 0.95 else 'BELOW GOAL'}")
    if a.json:
        import json

        sys.path.insert(0, str(ROOT))
        from bench.common import environment

        a.json.write_text(json.dumps({
            "scenario": "http_rate", "env": environment(), "quick": a.quick,
            "limit": {"requests": a.requests, "per_seconds": a.per_seconds, "batch": a.batch},
            "runs": runs, "ratios": {"efficiency": med},
            "goals": {"efficiency >= 0.95": med >= 0.95}}, indent=2))
    return 0 if med >= 0.95 or a.quick else 1  # --quick: a smoke check, not a verdict


if __name__ == "__main__":
    raise SystemExit(main())

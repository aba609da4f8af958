"""conn's benchmark suite: ``python -m bench [--quick] [--only NAME ...]``.

Runs each scenario script in its own process (so each side's peak memory is its own),
prints its table of medians and ratios measured in the same run, and writes everything to
``bench/results/suite-<time>.json`` for tracking over time. ``--quick`` keeps the whole
suite under about two minutes; CI runs it only to check that it still runs, never to
assert a time.

Scenarios (see docs/performance.md for the figures and the goals):

  full_sync        1 and 3: first full sync Parquet → consent → mapping → Parquet, against
                   singer-sdk tap|target, dlt's Arrow path and a bare pyarrow pass; growth
                   at 100k, 1M and 10M rows
  planner          2: incremental plan of 10M rows with 1% changed vs DuckDB's anti-join
  consent_mapping  consent gate + mapping throughput vs Singer stream maps and pyarrow
  http_rate        4: records/s against a rate-limited local server vs the theoretical max
  startup          5: ``conn --help`` and a one-row ``conn sync``
  singer_bridge    a Singer tap into conn vs the same tap into a singer-sdk target
  sql_copy         PostgreSQL → PostgreSQL through conn vs psql COPY | COPY
  pg_stream        PostgreSQL commit → webhook through ``conn sync --follow`` vs a bare
                   psycopg2 replication loop: latency at given rates, highest rate
  profiles         identity stitching of ~10.8M identifier edges (2M people): full,
                   rebuild and 1 % incremental builds vs DuckDB SQL label propagation
  profiles_command the whole ``conn profiles build`` (read, stitch, golden records, save)
                   over a DuckDB warehouse of 2M people: first, 1 % incremental, --full
  traits           ten traits over 20M events for 1M keys vs one hand-written DuckDB
                   query; a trigger pass over 1M keys with 1% crossing
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, environment, save

SCENARIOS = ["full_sync", "planner", "consent_mapping", "http_rate", "startup",
             "singer_bridge", "sql_copy", "pg_stream", "profiles", "profiles_command",
             "traits"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few runs (< ~2 min)")
    p.add_argument("--only", nargs="*", choices=SCENARIOS, help="run only these scenarios")
    p.add_argument("--smoke", action="store_true",
                   help="with --quick: the CI check that every scenario still runs (same)")
    p.add_argument("--keep-going", action="store_true", default=True)
    args = p.parse_args(argv)
    chosen = args.only or SCENARIOS
    suite: dict = {"env": environment(), "quick": args.quick, "scenarios": {}}
    failed = []
    for name in chosen:
        script = ROOT / "bench" / f"{name}.py"
        if not script.exists():
            print(f"\n# {name}: not present, skipped")
            continue
        print(f"\n# {name}", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = Path(tmp.name)
        cmd = [sys.executable, str(script), "--json", str(out)]
        if args.quick:
            cmd.append("--quick")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT)
        entry: dict = {"seconds": round(time.perf_counter() - t0, 1),
                       "exit_code": proc.returncode}
        if out.exists() and out.stat().st_size:
            with contextlib.suppress(json.JSONDecodeError):
                entry["result"] = json.loads(out.read_text())
        out.unlink(missing_ok=True)
        suite["scenarios"][name] = entry
        if proc.returncode != 0:
            failed.append(name)
    path = save("suite", suite)
    print(f"\nresults written to {path.relative_to(ROOT)}")
    if failed:
        print(f"scenarios that did not run to the end: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

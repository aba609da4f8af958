"""Benchmark: holdout assignment and member recording (docs/experiments.md).

* **assign**: ``conn.experiments.holdout.held_out`` over N e-mail keys, against the bare
  floor of the same job, DuckDB computing ``sha256(salt || key)`` and comparing its hex
  prefix (what any implementation must at least do);
* **record**: ``ExperimentStore.record`` of the N keys into the embedded store's file, in
  the runtime's groups of 500,000 keys: a first run (every key new) and a second run
  (every key already a member).

Medians of ``--repeat`` runs, ratios from the same run. Usage::

    .venv/bin/python bench/holdout.py                 # 1,000,000 keys, 5 runs
    .venv/bin/python bench/holdout.py --quick         # 100,000 keys, 3 runs
    .venv/bin/python bench/holdout.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.quick:
        args.keys, args.repeat = 100_000, 3
    import duckdb
    import pyarrow as pa
    from conn.experiments.holdout import held_out, threshold
    from conn.runtime.holdouts import FLUSH_ROWS
    from conn.state.backends.duckdb.experiments import file_experiments

    keys = pa.array([f"user{i}@example.com" for i in range(args.keys)])
    bound = f"{threshold(10):016x}"
    con = duckdb.connect()
    con.register("k", pa.table({"v": keys}))
    conn_s, floor_s, first_s, second_s = [], [], [], []
    mask = None
    for _ in range(args.repeat):
        t = time.perf_counter()
        mask = held_out(keys, 10, "salt")
        conn_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        con.sql("SELECT left(sha256('salt' || chr(31) || v), 16) < $b FROM k",
                params={"b": bound}).to_arrow_table()
        floor_s.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            store = file_experiments(Path(tmp))
            store.begin("e", "s", {"percent": "10", "salt": "salt"}, "r0")
            for run, out in (("r1", first_s), ("r2", second_s)):
                t = time.perf_counter()
                for at in range(0, args.keys, FLUSH_ROWS):
                    store.record("e", run, keys.slice(at, FLUSH_ROWS),
                                 mask.slice(at, FLUSH_ROWS))
                out.append(time.perf_counter() - t)
    med = {k: round(statistics.median(v), 3) for k, v in
           (("assign_conn", conn_s), ("assign_duckdb_floor", floor_s),
            ("record_first_run", first_s), ("record_second_run", second_s))}
    res = {"keys": args.keys, "repeat": args.repeat, "seconds": med,
           "assign_ratio": round(med["assign_conn"] / med["assign_duckdb_floor"], 2),
           "held_out": mask.true_count if mask is not None else None}
    print(f"{args.keys:,} keys, median of {args.repeat}")
    for k, v in med.items():
        print(f"  {k:22s} {v:7.3f} s")
    print(f"  conn / floor (assign)  {res['assign_ratio']:7.2f}x")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

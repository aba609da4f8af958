"""Benchmark of traits and triggers (docs/traits.md) against one hand-written DuckDB query.

A DuckDB file holds ``events`` (20M rows: customer, type, amount, time over 60 days) for
1M customers. Ten traits (counts, sums, averages, min, max, last, distinct count and
recency, over 7 days, 30 days and all time, with filters) are computed:

* ``conn``: what a run does: the project's ``traits:`` parsed, one query generated and
  run inside the DuckDB source (``Source.sql_relation``), the result indexed by key;
  then (timed apart) the traits added to the 1M customers in 64k-row batches.
* ``hand``: the same ten aggregates written by hand as one ``GROUP BY`` query on the
  same file, fetched as Arrow.
* ``trigger``: a threshold trigger (below 40, re-arm at 50) over the 1M keys whose stored
  entries are all armed, 1% of them now below 40: read the entries, look each 64k batch
  up by key id, evaluate, keep the firing rows, write what changed (the pass a run adds
  to the traits). Timed apart: folding the 1M-entry log into the sorted base (what a
  run pays when the log outgrew a quarter of the base).

Each side runs in a fresh process (its own peak RSS); medians of ``--runs``.

    .venv/bin/python bench/traits.py            # 1M keys, 20M events
    .venv/bin/python bench/traits.py --quick    # 20k keys, 400k events, 1 run
    .venv/bin/python bench/traits.py --sides trigger --runs 5   # the trigger pass only
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAITS = {
    "events_all": {"aggregate": "count"},
    "orders_7d": {"aggregate": "count", "time": "ts", "window": "7d",
                  "where": "type = 'order'"},
    "ltv": {"aggregate": "sum", "column": "amount", "where": "type = 'order'"},
    "avg_30d": {"aggregate": "avg", "column": "amount", "time": "ts", "window": "30d"},
    "smallest": {"aggregate": "min", "column": "amount"},
    "largest_7d": {"aggregate": "max", "column": "amount", "time": "ts", "window": "7d"},
    "last_type": {"aggregate": "last", "column": "type", "time": "ts"},
    "kinds_30d": {"aggregate": "distinct", "column": "type", "time": "ts", "window": "30d"},
    "days_since_login": {"aggregate": "recency", "time": "ts", "where": "type = 'login'"},
    "failures_7d": {"aggregate": "count", "time": "ts", "window": "7d",
                    "where": "type = 'feature_failed'"},
}


def hand_sql(now: float) -> str:
    """The ten traits written by hand as one query."""
    d7, d30 = now - 7 * 86400, now - 30 * 86400
    return f"""
    SELECT CAST(customer_id AS VARCHAR) AS k,
      count(*) AS events_all,
      count(*) FILTER (WHERE type = 'order' AND epoch(ts) >= {d7}) AS orders_7d,
      sum(amount) FILTER (WHERE type = 'order') AS ltv,
      avg(amount) FILTER (WHERE epoch(ts) >= {d30}) AS avg_30d,
      min(amount) AS smallest,
      max(amount) FILTER (WHERE epoch(ts) >= {d7}) AS largest_7d,
      arg_max(type, epoch(ts)) AS last_type,
      count(DISTINCT type) FILTER (WHERE epoch(ts) >= {d30}) AS kinds_30d,
      CAST(floor(({now} - max(epoch(ts)) FILTER (WHERE type = 'login')) / 86400) AS BIGINT)
        AS days_since_login,
      count(*) FILTER (WHERE type = 'feature_failed' AND epoch(ts) >= {d7}) AS failures_7d
    FROM events WHERE customer_id IS NOT NULL GROUP BY 1"""


def make_data(path: Path, keys: int, events: int, now: float) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    con.execute(f"""CREATE TABLE events AS SELECT
        (hash(i) % {keys})::BIGINT AS customer_id,
        (['order', 'login', 'feature_failed', 'page_view'])[1 + (hash(i * 7) % 4)::INT] AS type,
        ((hash(i * 13) % 20000) / 100.0)::DOUBLE AS amount,
        to_timestamp({now} - (hash(i * 31) % (60 * 86400))::DOUBLE)::TIMESTAMP AS ts
        FROM range({events}) t(i)""")
    con.close()


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(side: str, db: Path, keys: int, now: float) -> dict:
    import pyarrow as pa

    if side == "hand":
        import duckdb

        t0 = time.perf_counter()
        con = duckdb.connect(str(db), read_only=True)
        table = con.sql(hand_sql(now)).to_arrow_table()
        return {"seconds": time.perf_counter() - t0, "rows": table.num_rows, "rss": _rss()}
    if side == "conn":
        from conn.config.traits import parse_activation
        from conn.plugins import get_registry
        from conn.traits.evaluate import Traits

        reg = get_registry()
        cls = reg.source_class("duckdb")
        raw = {"sources": {"wh": {"type": "duckdb"}},
               "traits": {n: {"source": "wh", "stream": "events", "key": "customer_id",
                              **t} for n, t in TRAITS.items()}}
        t0 = time.perf_counter()
        act, errs = parse_activation(raw, "bench.yml")
        assert not errs, errs
        traits = Traits(act, set(TRAITS), lambda _: cls.create({"path": str(db)},
                                                               instance="wh"), now, "bench.yml")
        table = traits.table()
        compute = time.perf_counter() - t0
        t1 = time.perf_counter()
        ids = pa.array([str(i) for i in range(keys)], pa.string())
        step = 65_536
        for lo in range(0, keys, step):
            part = ids.slice(lo, step)
            table.attach(pa.RecordBatch.from_arrays([part], names=["id"]), part)
        return {"seconds": compute, "attach_seconds": time.perf_counter() - t1,
                "rows": len(table.keys), "rss": _rss()}
    # trigger
    import numpy as np
    from conn.config.traits import Trigger
    from conn.state.backends.duckdb.triggers import open_file
    from conn.state.planner.row_hashes import connect, key_ids
    from conn.traits.stage import ActivationStage

    work = Path(tempfile.mkdtemp(prefix="conn-bench-trig-"))
    store = open_file(work / "t")
    ids = pa.array([str(i) for i in range(keys)], pa.string())
    # The state a previous run left: every key armed at 60, folded into the sorted base.
    store.commit(pa.table({"kid": pa.array(key_ids(connect(), ids), pa.uint64()), "key": ids,
                           "armed": pa.array(np.ones(keys, bool)),
                           "value": pa.array(["60"] * keys, pa.string()),
                           "fired_at": pa.nulls(keys, pa.float64()),
                           "seq": pa.array(np.zeros(keys, np.int64))}))
    t_fold = time.perf_counter()
    store.fold()
    fold = time.perf_counter() - t_fold
    values = pa.array(np.where(np.arange(keys) % 100 == 7, 30.0, 60.0))
    trig = Trigger("drop", on="health", kind="below", threshold=40, rearm=50)
    stage = ActivationStage(None, None, trig, None, now, pa.schema([("health", pa.float64())]))
    stage.store = store
    t0, c0 = time.perf_counter(), time.process_time()
    fired = 0
    step = 65_536
    for lo in range(0, keys, step):
        k, v = ids.slice(lo, step), values.slice(lo, step)
        # What a run does per batch: look the keys up (every entry read once, by key id),
        # evaluate, keep the firing rows; after delivery, write what changed.
        batch, sent, verdict = stage.apply(pa.RecordBatch.from_arrays([v], ["health"]), k)
        assert verdict is not None
        fired += batch.num_rows
        verdict.commit(sent)
    return {"seconds": time.perf_counter() - t0, "rows": fired, "rss": _rss(),
            "cpu_seconds": time.process_time() - c0, "fold_seconds": fold}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--child", choices=["conn", "hand", "trigger"])
    p.add_argument("--sides", default="hand,conn,trigger",
                   help="comma-separated sides to run (e.g. trigger)")
    p.add_argument("--db", type=Path)
    p.add_argument("--keys", type=int)
    p.add_argument("--now", type=float)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.db, args.keys, args.now)))
        return 0
    from bench.common import launcher, print_table

    keys, events = (20_000, 400_000) if args.quick else (1_000_000, 20_000_000)
    runs = 1 if args.quick else args.runs
    now = time.time()
    sides = [s for s in args.sides.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="conn-bench-traits-"))
    db = work / "events.duckdb"
    t0 = time.perf_counter()
    if {"hand", "conn"} & set(sides):
        make_data(db, keys, events, now)
        print(f"data: {keys:,} keys, {events:,} events in {time.perf_counter() - t0:.1f} s")
    results: dict[str, dict[str, list[float]]] = {}
    # Sides interleaved run by run: a noisy neighbour slows both alike.
    for _ in range(runs + 1):
        for side in sides:
            _, rss, out = launcher().run([sys.executable, __file__, "--child", side, "--db",
                                          str(db), "--keys", str(keys), "--now", str(now)])
            r = json.loads(out.strip().splitlines()[-1])
            got = results.setdefault(side, {"seconds": [], "rss": [], "attach": [],
                                            "fold": [], "cpu": []})
            got["cpu"].append(r.get("cpu_seconds", 0.0))
            got["seconds"].append(r["seconds"])
            got["rss"].append(rss)
            got["attach"].append(r.get("attach_seconds", 0.0))
            got["fold"].append(r.get("fold_seconds", 0.0))
    med = {s: {k: statistics.median(v[1:] if len(v) > 1 else v) for k, v in r.items()}
           for s, r in results.items()}
    ratio = med["conn"]["seconds"] / med["hand"]["seconds"] \
        if "conn" in med and "hand" in med else 0.0
    rows = []
    if "hand" in med:
        rows.append(["hand-written DuckDB query", med["hand"]["seconds"], med["hand"]["rss"],
                     ""])
    if "conn" in med:
        rows += [["conn traits (query + index)", med["conn"]["seconds"], med["conn"]["rss"],
                  f"{ratio:.2f}x hand" if ratio else ""],
                 [f"conn: add to {keys:,} rows in batches", med["conn"]["attach"], "", ""]]
    if "trigger" in med:
        rows += [["trigger pass (1% crossing)", med["trigger"]["seconds"],
                  med["trigger"]["rss"], ""],
                 ["trigger pass: CPU seconds (all threads)", med["trigger"]["cpu"], "", ""],
                 ["trigger state fold (log into base)", med["trigger"]["fold"], "", ""]]
    print_table(f"traits: {keys:,} keys, {events:,} events, 10 traits (medians of {runs})",
                rows, ["side", "seconds", "peak MB", "ratio"])
    if args.json:
        args.json.write_text(json.dumps({"keys": keys, "events": events, "medians": med,
                                         "ratio": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

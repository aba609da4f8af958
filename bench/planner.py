"""Benchmark of the change planner against DuckDB's own full-snapshot diff.

A snapshot of N customers (6 mapped columns) was delivered; the new snapshot has 1% of
rows updated, 0.5% inserted and 0.5% deleted. Measured, each in a fresh subprocess (time
and peak RSS), medians of ``--runs``:

* ``plan``: what the runner does: open the sync (reads the prior state from the DuckDB
  state file), ``plan()`` every batch as it streams from the source, then list the
  deletions. Generating the source batches is not timed (it is in the RSS).
* ``plan+commit``: the same plus committing the changed rows as acknowledged and the
  end-of-run compaction.
* ``plan, no kernels`` (with ``--no-kernels``): ``plan`` with ``CONN_SPEEDUPS=0``, as
  on a machine where ``conn-speedups`` could not be built.
* ``reference``: DuckDB hashing every row of both full snapshots (held as Arrow tables)
  and anti-/full-joining them on the key: the "diff two snapshots" approach.

``--engines`` also measures DuckDB against SQLite for a per-batch SQL diff against an
indexed state table (how an SQLite-backed store would plan), at 1M rows.

    .venv/bin/python bench/planner.py            # 10M rows
    .venv/bin/python bench/planner.py --quick    # 300k rows, 1 run (a smoke check)
    .venv/bin/python bench/planner.py --json out.json   # also write the result dict
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEGMENTS = pa.array(["gold", "silver", "bronze"])


def make_batch(ids: pa.Array, version: pa.Array) -> pa.RecordBatch:
    """Mapped customer rows for ``ids``; ``version`` 1 marks an updated row."""
    sid = pc.cast(ids, pa.string())
    return pa.record_batch({
        "email": pc.binary_join_element_wise("user", sid, "@example.com", ""),
        "name": pc.binary_join_element_wise(
            "Name ", pc.cast(pc.bit_wise_and(ids, 4095), pa.string()), " Surname", ""),
        "ltv": pc.add(pc.divide(pc.cast(pc.bit_wise_and(pc.multiply(ids, 7919), 65535),
                                        pa.float64()), 100.0), pc.cast(version, pa.float64())),
        "segment": SEGMENTS.take(pc.bit_wise_and(ids, 1)),
        "score": pc.bit_wise_and(ids, 127),
        "updated_at": pc.cast(pc.add(ids, pc.multiply(version, 1000)), pa.timestamp("s")),
    })


def _mod(a: pa.Array, m: int) -> pa.Array:
    return pc.subtract(a, pc.multiply(pc.divide(a, m), m))  # integer division


def old_snapshot(n: int, b: int) -> Iterator[tuple[pa.Array, pa.RecordBatch]]:
    """The delivered snapshot: ids 0..n-1."""
    for lo in range(0, n, b):
        ids = pa.array(range(lo, min(n, lo + b)), pa.int64())
        yield pc.cast(ids, pa.string()), make_batch(ids, pa.nulls(len(ids), pa.int64())
                                                    .fill_null(0))


def new_snapshot(n: int, b: int) -> Iterator[tuple[pa.Array, pa.RecordBatch]]:
    """0.5% deleted (id % 200 == 7), 1% updated (id % 100 == 3), 0.5% inserted (ids n..)."""
    for lo in range(0, n, b):
        hi = min(n, lo + b)
        old = pa.array(range(lo, hi), pa.int64())
        old = old.filter(pc.not_equal(_mod(old, 200), 7))
        new = pa.array(range(n + lo // 200, n + hi // 200), pa.int64())
        ids = pa.concat_arrays([old, new])
        version = pc.cast(pc.equal(_mod(ids, 100), 3), pa.int64())
        yield pc.cast(ids, pa.string()), make_batch(ids, version)


#: The side that plans with conn-speedups switched off (``--no-kernels``).
NO_KERNELS = "plan, no kernels"


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- children -----------------------------------------------------------------------------


def child_setup(state: Path, n: int, b: int) -> dict:
    from conn.state.backends.duckdb.store import DuckDBStateStore

    store = DuckDBStateStore.open(str(state), None)
    t0 = time.perf_counter()
    with store.open_sync("bench", "setup") as st:
        for keys, batch in old_snapshot(n, b):
            plan = st.plan(keys, batch)
            st.commit(keys, plan.hashes, keys, pa.array([True] * len(keys)), [])
    return {"seconds": time.perf_counter() - t0, "maxrss_mb": _maxrss_mb()}


def child_plan(state: Path, n: int, b: int, commit: bool) -> dict:
    import shutil

    from conn.state.backends.duckdb.store import DuckDBStateStore

    work = Path(tempfile.mkdtemp(prefix="conn-bench-"))
    try:
        shutil.copytree(state, work / "s")  # each run starts from the same state
        store = DuckDBStateStore.open(str(work / "s"), None)
        counts = {"inserts": 0, "updates": 0, "unchanged": 0, "deletes": 0}
        timed = 0.0
        t0 = time.perf_counter()
        cm = store.open_sync("bench", uuid.uuid4().hex)
        st = cm.__enter__()
        timed += time.perf_counter() - t0
        for keys, batch in new_snapshot(n, b):
            t0 = time.perf_counter()
            plan = st.plan(keys, batch)
            counts["inserts"] += len(plan.inserts)
            counts["updates"] += len(plan.updates)
            counts["unchanged"] += plan.unchanged
            if commit:
                idx = pa.concat_arrays([plan.inserts, plan.updates])
                k = keys.take(idx)
                st.commit(k, plan.hashes.take(idx), k, pa.array([True] * len(k)), [])
            timed += time.perf_counter() - t0
        t0 = time.perf_counter()
        for dkeys, _, _ in st.deletions(10_000):
            counts["deletes"] += len(dkeys)
            if commit:
                st.commit_deletes(dkeys, pa.array([True] * len(dkeys)), [])
        if commit:
            cm.__exit__(None, None, None)
        timed += time.perf_counter() - t0
        if not commit:
            cm.__exit__(None, None, None)
        return {"seconds": timed, "maxrss_mb": _maxrss_mb(), "counts": counts}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def child_reference(n: int, b: int) -> dict:
    import duckdb

    old = pa.Table.from_batches([bt.add_column(0, "id", k) for k, bt in old_snapshot(n, b)])
    new = pa.Table.from_batches([bt.add_column(0, "id", k) for k, bt in new_snapshot(n, b)])
    con = duckdb.connect()
    con.register("old", old)
    con.register("new", new)
    cols = "email, name, ltv, segment, score, updated_at"
    t0 = time.perf_counter()
    res = con.sql(f"""
        WITH o AS (SELECT id, hash({cols}) AS h FROM old),
             n AS (SELECT id, hash({cols}) AS h FROM new)
        SELECT coalesce(n.id, o.id) AS id,
               CASE WHEN o.id IS NULL THEN 'insert' WHEN n.id IS NULL THEN 'delete'
                    ELSE 'update' END AS op
        FROM o FULL OUTER JOIN n ON o.id = n.id
        WHERE o.id IS NULL OR n.id IS NULL OR o.h <> n.h""").to_arrow_table()
    seconds = time.perf_counter() - t0
    counts = {r["op"]: r["count"] for r in
              res.group_by("op").aggregate([("id", "count")])
              .rename_columns(["op", "count"]).to_pylist()}
    return {"seconds": seconds, "maxrss_mb": _maxrss_mb(), "counts": counts}


def child_engines(n: int, b: int) -> dict:
    """Per-batch SQL diff against an indexed state table: SQLite vs DuckDB."""
    import sqlite3

    import duckdb
    from conn.state.planner import row_hashes

    hcon = row_hashes.connect()
    work = Path(tempfile.mkdtemp(prefix="conn-engines-"))
    out: dict = {}
    # State: key -> hash of the old snapshot.
    state_rows = []
    for keys, batch in old_snapshot(n, b):
        _, h = row_hashes.hash_batch(hcon, keys, batch)
        state_rows.append(pa.table({"key": keys, "hash": pa.array(h.astype("int64"))}))
    state = pa.concat_tables(state_rows)
    new_batches = []
    for keys, batch in new_snapshot(n, b):
        _, h = row_hashes.hash_batch(hcon, keys, batch)
        new_batches.append(pa.table({"key": keys, "hash": pa.array(h.astype("int64"))}))

    # SQLite: state table with a primary key; per batch insert into a temp table and join.
    db = sqlite3.connect(work / "s.sqlite")
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, hash INTEGER) WITHOUT ROWID")
    db.executemany("INSERT INTO state VALUES (?, ?)",
                   zip(state.column("key").to_pylist(), state.column("hash").to_pylist(),
                       strict=True))
    db.commit()
    t0 = time.perf_counter()
    changed = 0
    for t in new_batches:
        db.execute("CREATE TEMP TABLE b (key TEXT PRIMARY KEY, hash INTEGER)")
        db.executemany("INSERT INTO b VALUES (?, ?)",
                       zip(t.column("key").to_pylist(), t.column("hash").to_pylist(),
                           strict=True))
        changed += db.execute("SELECT count(*) FROM b LEFT JOIN state s ON s.key = b.key "
                              "WHERE s.key IS NULL OR s.hash <> b.hash").fetchone()[0]
        db.execute("DROP TABLE b")
    out["sqlite_sql_per_batch"] = {"seconds": time.perf_counter() - t0, "changed": changed}
    db.close()

    # DuckDB: the same per-batch SQL join against a state table (ART primary key).
    con = duckdb.connect(str(work / "s.duckdb"))
    con.execute("CREATE TABLE state (key VARCHAR PRIMARY KEY, hash BIGINT)")
    con.register("st_arrow", state)
    con.execute("INSERT INTO state SELECT * FROM st_arrow")
    t0 = time.perf_counter()
    changed = 0
    for t in new_batches:
        con.register("b", t)
        changed += con.execute("SELECT count(*) FROM b LEFT JOIN state s ON s.key = b.key "
                               "WHERE s.key IS NULL OR s.hash <> b.hash").fetchall()[0][0]
    out["duckdb_sql_per_batch"] = {"seconds": time.perf_counter() - t0, "changed": changed}
    con.close()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return out


# --- driver -------------------------------------------------------------------------------


def _run_child(args: list[str], **extra_env: str) -> dict:
    """Run a measurement child through the benchmarks' launcher: its peak RSS (which it
    reports itself) is then its own, not this process's (see bench.common.Launcher)."""
    from bench.common import launcher

    try:
        _, _, out = launcher().run([sys.executable, __file__, *args], env=extra_env)
    except RuntimeError as exc:
        raise SystemExit(f"child {args} failed:\n{exc}") from None
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300k rows, 1 run")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=None, help="runs (3; --quick 1)")
    ap.add_argument("--json", type=Path, help="write the result dict here")
    ap.add_argument("--engines", action="store_true", help="also DuckDB vs SQLite (1M)")
    ap.add_argument("--no-kernels", action="store_true",
                    help="also plan without conn-speedups (CONN_SPEEDUPS=0), same run")
    ap.add_argument("--child", choices=["setup", "plan", "plan+commit", "reference",
                                        "engines"])
    ap.add_argument("--state")
    a = ap.parse_args()
    n = a.rows or (300_000 if a.quick else 10_000_000)
    a.runs = a.runs or (1 if a.quick else 3)
    b = a.batch_rows
    if a.child:
        if a.child == "setup":
            r = child_setup(Path(a.state), n, b)
        elif a.child in ("plan", "plan+commit"):
            r = child_plan(Path(a.state), n, b, commit=a.child == "plan+commit")
        elif a.child == "reference":
            r = child_reference(n, b)
        else:
            r = child_engines(n, b)
        print(json.dumps(r))
        return

    print(f"rows {n:,}, batches of {b:,}, {a.runs} run(s) each; 1% updated, 0.5% inserted, "
          "0.5% deleted")
    with tempfile.TemporaryDirectory(prefix="conn-bench-state-") as tmp:
        state = Path(tmp) / "state"
        s = _run_child(["--child", "setup", "--state", str(state), "--rows", str(n),
                        "--batch-rows", str(b)])
        print(f"first run (all inserts, plan+commit): {s['seconds']:.2f} s, "
              f"peak {s['maxrss_mb']:.0f} MB")
        results: dict[str, list[dict]] = {"plan": [], "plan+commit": [], "reference": []}
        if a.no_kernels:
            results[NO_KERNELS] = []
        for _ in range(a.runs):
            for kind in results:
                child = "plan" if kind == NO_KERNELS else kind
                extra = ["--state", str(state)] if kind != "reference" else []
                env = {"CONN_SPEEDUPS": "0"} if kind == NO_KERNELS else {}
                results[kind].append(_run_child(["--child", child, "--rows", str(n),
                                                 "--batch-rows", str(b), *extra], **env))
    med = {k: (statistics.median(r["seconds"] for r in v),
               statistics.median(r["maxrss_mb"] for r in v)) for k, v in results.items()}
    print(f"counts: plan {results['plan'][0]['counts']}; "
          f"reference {results['reference'][0]['counts']}")
    ref_t, ref_m = med["reference"]
    for k, (t, m) in med.items():
        print(f"{k:16s} {t:7.2f} s  peak {m:7.0f} MB   time ratio {t / ref_t:5.2f}  "
              f"memory ratio {m / ref_m:5.2f}")
    t, m = med["plan"]
    ok = t <= ref_t / 2 and m < 1024
    print(f"goal (plan <= half the reference's time and < 1 GB): {'met' if ok else 'MISSED'}")
    if a.json:
        from bench.common import environment

        a.json.write_text(json.dumps({
            "scenario": "planner", "env": environment(), "quick": a.quick, "rows": n,
            "first_run": s, "sides": {k: {"median_s": v[0], "peak_mb": v[1], "runs": results[k]}
                                      for k, v in med.items()},
            "ratios": {"plan/reference time": t / ref_t, "plan/reference memory": m / ref_m},
            "goals": {"plan <= half of DuckDB anti-join": t <= ref_t / 2,
                      "plan < 1 GB": m < 1024}}, indent=2))
    if a.engines:
        e = _run_child(["--child", "engines", "--rows", str(min(n, 1_000_000)),
                        "--batch-rows", str(b)])
        for k, v in e.items():
            print(f"engines 1M: {k:22s} {v['seconds']:7.2f} s  changed {v['changed']}")


if __name__ == "__main__":
    main()

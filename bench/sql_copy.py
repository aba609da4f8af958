"""PostgreSQL -> PostgreSQL copy: conn's postgres source + destination versus the
near-limit reference ``psql COPY TO STDOUT | psql COPY FROM STDIN`` (binary format).

    python bench/sql_copy.py              # 1,000,000 rows, median of 3 runs
    python bench/sql_copy.py --quick      # 100,000 rows, 1 run; skipped without PostgreSQL
    python bench/sql_copy.py --json out.json   # also write the result dict

Needs the conn-postgres plugin installed and PostgreSQL at --url (default: the local
test server). Rows go through ``PostgresSource.read`` (server-side cursor, Arrow batches)
and ``conn.testing.harness.write_records`` (the runtime's delivery path: seal, capability
split, ``write_batch`` = binary COPY into a staging table + INSERT ... ON CONFLICT).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import pyarrow as pa

URL = "postgresql://postgres@127.0.0.1:5432/test"


def sql(url: str, statement: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)


def make_source(url: str, table: str, rows: int) -> None:
    sql(url, f'DROP TABLE IF EXISTS "{table}"')
    sql(url, f'''CREATE TABLE "{table}" (id bigint PRIMARY KEY, email text, name text,
        score numeric(10,2), ltv double precision, active boolean, created_at timestamptz,
        segment text)''')
    sql(url, f'''INSERT INTO "{table}" SELECT g, 'user' || g || '@example.com',
        'Name ' || g, (g % 100000) / 100.0, g * 0.37, g % 3 = 0,
        '2024-01-01'::timestamptz + g * interval '1 second', 'seg' || (g % 17)
        FROM generate_series(1, {rows}) g''')
    sql(url, f'ANALYZE "{table}"')


def run_conn(url: str, src_table: str, dst_table: str, operation: str) -> float:
    from conn.testing.harness import write_records
    from conn_postgres.destination import PostgresDestination
    from conn_postgres.source import PostgresSource

    sql(url, f'TRUNCATE "{dst_table}"')
    src = PostgresSource({"url": url, "tables": [src_table]})
    dst = PostgresDestination({"url": url, "batch_size": 65_536})
    info = src.stream(src_table)
    dst.object(dst_table)
    t0 = time.perf_counter()
    n = 0
    for item in src.read(info, batch_rows=65_536):
        if not isinstance(item, pa.RecordBatch):
            continue
        res = write_records(dst, dst_table, item, operation=operation, match_key="id")
        if res.rejected or res.pending:
            raise SystemExit(f"write failed: {res.error or res.rejected[:3]}")
        n += item.num_rows
    elapsed = time.perf_counter() - t0
    src.close()
    dst.close()
    return elapsed


def psql_args(url: str) -> list[str]:
    u = urlsplit(url)
    return ["psql", "-X", "-q", "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432),
            "-U", u.username or "postgres", "-d", u.path.lstrip("/") or "postgres"]


def run_psql(url: str, src_table: str, dst_table: str) -> float:
    sql(url, f'TRUNCATE "{dst_table}"')
    p = psql_args(url)
    env = dict(os.environ, PGPASSWORD=urlsplit(url).password or "")
    t0 = time.perf_counter()
    out = subprocess.Popen([*p, "-c", f'COPY "{src_table}" TO STDOUT (FORMAT binary)'],
                           stdout=subprocess.PIPE, env=env)
    subprocess.run([*p, "-c", f'COPY "{dst_table}" FROM STDIN (FORMAT binary)'],
                   stdin=out.stdout, check=True, env=env)
    out.stdout.close()
    if out.wait() != 0:
        raise SystemExit("psql COPY TO failed")
    return time.perf_counter() - t0


CONN_YML = """version: 1
sources:
  pg_src: {{type: postgres, config: {{url: "{url}", tables: [{src}]}}}}
destinations:
  pg_dst: {{type: postgres, config: {{url: "{url}", batch_size: 65536}}}}
syncs:
  copy:
    source: pg_src
    stream: {src}
    destination: pg_dst
    object: {dst}
    primary_key: id
    match_key: id
    mode: {mode}
    consent: {{legal_basis: {{}}}}
    mapping: {{{mapping}}}
"""


def run_sync(url: str, src_table: str, dst_table: str, operation: str) -> float:
    """``conn sync`` in a fresh project directory (fresh state: every row is new)."""
    import tempfile

    sql(url, f'TRUNCATE "{dst_table}"')
    cols = ["id", "email", "name", "score", "ltv", "active", "created_at", "segment"]
    conn_bin = os.path.join(os.path.dirname(sys.executable), "conn")
    with tempfile.TemporaryDirectory() as project:
        with open(os.path.join(project, "conn.yml"), "w") as f:
            f.write(CONN_YML.format(url=url, src=src_table, dst=dst_table, mode=operation,
                                    mapping=", ".join(f"{c}: {c}" for c in cols)))
        t0 = time.perf_counter()
        done = subprocess.run([conn_bin, "sync", "pg_src", "pg_dst", "--json"], cwd=project,
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"conn sync failed ({done.returncode}): {done.stdout[-2000:]}"
                         f"{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("CONN_BENCH_PG_URL", URL))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=None, help="runs (3; --quick 1)")
    ap.add_argument("--json", help="write the result dict to this file")
    ap.add_argument("--operation", default="upsert", choices=["upsert", "insert", "append"])
    ap.add_argument("--quick", action="store_true", help="100,000 rows")
    ap.add_argument("--no-sync", action="store_true", help="skip the conn sync path")
    args = ap.parse_args()
    rows = 100_000 if args.quick else args.rows
    args.runs = args.runs or (1 if args.quick else 3)
    try:
        sql(args.url, "SELECT 1")
    except Exception as exc:  # no server (e.g. a CI runner): nothing to measure
        if not args.quick:
            raise
        print(f"skipped: PostgreSQL at {args.url} not reachable ({type(exc).__name__})")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"scenario": "sql_copy", "skipped": str(exc)[:200], "goals": {}}, f)
        return
    tag = uuid.uuid4().hex[:8]
    src, dst = f"bench_src_{tag}", f"bench_dst_{tag}"
    try:
        print(f"preparing {rows:,} rows ...", file=sys.stderr)
        make_source(args.url, src, rows)
        sql(args.url, f'CREATE TABLE "{dst}" (LIKE "{src}" INCLUDING ALL)')
        conn_t, ref_t, sync_t = [], [], []
        for i in range(args.runs):
            ref_t.append(run_psql(args.url, src, dst))
            conn_t.append(run_conn(args.url, src, dst, args.operation))
            line = f"run {i + 1}: psql COPY {ref_t[-1]:.2f}s, plugins {conn_t[-1]:.2f}s"
            if not args.no_sync:
                sync_t.append(run_sync(args.url, src, dst, args.operation))
                line += f", conn sync {sync_t[-1]:.2f}s"
            print(line, file=sys.stderr)
        c, r = statistics.median(conn_t), statistics.median(ref_t)
        result = {
            "rows": rows, "runs": args.runs, "operation": args.operation,
            "psql_copy_seconds": round(r, 3), "psql_copy_rows_per_s": round(rows / r),
            # the plugins path (source + destination as the runtime drives them)
            "conn_seconds": round(c, 3), "conn_rows_per_s": round(rows / c),
            "conn_vs_copy": round(r / c, 3),
        }
        print(f"psql COPY|COPY:          {rows / r:>10,.0f} rows/s (median of {args.runs})")
        print(f"plugins ({args.operation}):       {rows / c:>10,.0f} rows/s = "
              f"{r / c:.0%} of COPY")
        if sync_t:
            y = statistics.median(sync_t)
            result.update(sync_seconds=round(y, 3), sync_rows_per_s=round(rows / y),
                          sync_vs_copy=round(r / y, 3))
            print(f"conn sync ({args.operation}):     {rows / y:>10,.0f} rows/s = "
                  f"{r / y:.0%} of COPY (whole pipeline, CLI start-up included)")
        print(json.dumps(result))
        if args.json:
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
            from bench.common import environment

            with open(args.json, "w") as f:
                json.dump({"scenario": "sql_copy", "env": environment(), "quick": args.quick,
                           **result, "ratios": {"conn/copy": result["conn_vs_copy"],
                                                **({"sync/copy": result["sync_vs_copy"]}
                                                   if "sync_vs_copy" in result else {})},
                           "goals": {}}, f, indent=2)
    finally:
        sql(args.url, f'DROP TABLE IF EXISTS "{src}"')
        sql(args.url, f'DROP TABLE IF EXISTS "{dst}"')


if __name__ == "__main__":
    main()

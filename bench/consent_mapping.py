"""Benchmark: conn's consent gate + mapper against a Singer stream map and bare pyarrow.

The same job on synthetic customers (70 % opted in to marketing): keep opted-in rows,
normalise the e-mail (trim, lowercase), SHA-256 it, send ``id`` and the hash.

* **conn**: ``build_gate`` + ``build_mapper`` with ``consent.columns.marketing`` and a
  ``hash`` policy on the e-mail (the runtime's per-batch work: key array, gate, mapper);
* **bare pyarrow**: ``filter``, ``utf8_trim_whitespace``/``utf8_lower``, DuckDB
  ``sha256`` (pyarrow has no SHA-256 kernel), the minimum the job needs;
* **singer**: a singer-sdk tap piped into a singer-sdk target, the tap running the stream
  map ``__filter__: bool(marketing_opt_in)``, ``email_hash: sha256(email.strip().lower())``
  (singer-sdk installed in ``.venvs/bench-singer``). A full 1M-row Singer run took 117 s
  here (8.5k rows/s), so by default it runs 200,000 rows (``--singer-rows``) and its
  rows/s is extrapolated; shorter runs measure Singer *faster* per row, so the ratio
  printed is conservative.

Each path runs in its own process so peak RSS (``ru_maxrss``) is its own; conn and bare
pyarrow take the median of ``--repeat`` runs. Usage::

    .venv/bin/python bench/consent_mapping.py            # 1,000,000 rows
    .venv/bin/python bench/consent_mapping.py --quick    # 200,000 rows, 1 run, Singer 5,000
    .venv/bin/python bench/consent_mapping.py --json out.json   # also write the result dict
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SINGER_PY = ROOT / ".venvs" / "bench-singer" / "bin" / "python"
BATCH = 65_536


def make_rows(n: int) -> Any:
    """Synthetic customers as an Arrow table (vectorised; not timed)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(np.arange(n, dtype=np.int64))
    email = pc.binary_join_element_wise("  User", ids.cast(pa.string()), "@Example.COM ", "")
    opt = pa.array((np.arange(n) % 10) < 7)
    name = pc.binary_join_element_wise("Name ", ids.cast(pa.string()), "")
    return pa.table({"id": ids, "email": email, "name": name, "marketing_opt_in": opt})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_conn(n: int, repeat: int, events: bool = False) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from conn.consent import build_gate
    from conn.mapping import build_mapper
    from conn.testing.sandbox import make_context

    table = make_rows(n)
    batches = table.to_batches(max_chunksize=BATCH)
    consent: dict[str, Any] = {"columns": {"marketing": "marketing_opt_in"}}
    extra: dict[str, Any] = {}
    if events:  # consent from a consent source instead: one event per customer
        ids = pa.array(np.arange(n, dtype=np.int64)).cast(pa.string())
        ev = pa.table({"subject": ids, "purpose": pa.repeat(pa.scalar("marketing"), n),
                       "status": pc.if_else(table.column("marketing_opt_in"), "granted",
                                            "denied"),
                       "timestamp": pa.repeat(pa.scalar("2024-01-01T00:00:00"), n)})
        consent = {"source": "cs"}
        extra = {"consent_sources": {"cs": {"source": "s", "stream": "ev",
                                            "subject": "subject"}}, "events": {"ev": ev}}
    fields = {"type": "object", "properties": {"id": {"type": "integer"},
                                               "email": {"type": "string"}}}
    times = []
    sent = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        ctx = make_context(table.schema, purposes=("marketing",), consent=consent,
                           mapping={"id": "id", "email": "email"}, fields=fields,
                           personal={"email": "email"}, policies={"email": "hash"},
                           identifiers=("email",), match_key="email", **extra)
        gate, mapper = build_gate(ctx), build_mapper(ctx)
        assert not gate.issues() and not mapper.issues()
        sent = 0
        for b in batches:
            keys = b.column("id").cast(pa.string())  # what the runtime's key_array does
            mapped = mapper.apply(gate.apply(b, keys))
            sent += mapped.batch.num_rows
        times.append(time.perf_counter() - t0)
        assert gate.summary()["withheld"] == n - sent
    return {"rows": n, "sent": sent, "seconds": statistics.median(times),
            "peak_rss_mb": peak_rss_mb()}


def run_bare(n: int, repeat: int) -> dict[str, Any]:
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    table = make_rows(n)
    batches = table.to_batches(max_chunksize=BATCH)
    con = duckdb.connect()
    times = []
    sent = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        sent = 0
        for b in batches:
            kept = b.filter(pc.fill_null(b.column("marketing_opt_in"), False))
            email = pc.utf8_lower(pc.utf8_trim_whitespace(kept.column("email")))
            h = con.from_arrow(pa.table({"v": email})).project("sha256(v)").to_arrow_table()
            out = pa.RecordBatch.from_arrays([kept.column("id"), h.column(0).combine_chunks()],
                                             names=["id", "email"])
            sent += out.num_rows
        times.append(time.perf_counter() - t0)
    return {"rows": n, "sent": sent, "seconds": statistics.median(times),
            "peak_rss_mb": peak_rss_mb()}


TAP = '''
import sys
from singer_sdk import Stream, Tap
from singer_sdk import typing as th

class Customers(Stream):
    name = "customers"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("email", th.StringType),
        th.Property("name", th.StringType),
        th.Property("marketing_opt_in", th.BooleanType),
    ).to_dict()

    def get_records(self, context):
        for i in range(int(self.config["rows"])):
            yield {"id": i, "email": f"  User{i}@Example.COM ", "name": f"Name {i}",
                   "marketing_opt_in": i % 10 < 7}

class TapBench(Tap):
    name = "tap-bench"
    config_jsonschema = th.PropertiesList(th.Property("rows", th.IntegerType)).to_dict()

    def discover_streams(self):
        return [Customers(self)]

if __name__ == "__main__":
    TapBench.cli()
'''

TARGET = '''
import os
from singer_sdk import RecordSink, Target
from singer_sdk import typing as th

class CountSink(RecordSink):
    count = 0

    def process_record(self, record, context):
        CountSink.count += 1
        assert len(record["email_hash"]) == 64 and "email" not in record

    def clean_up(self):
        with open(os.environ["BENCH_COUNT_FILE"], "w") as f:
            f.write(str(CountSink.count))

class TargetBench(Target):
    name = "target-bench"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = CountSink

if __name__ == "__main__":
    TargetBench.cli()
'''


def run_singer(n: int) -> dict[str, Any]:
    if not SINGER_PY.exists():
        raise SystemExit(f"singer-sdk venv missing: {SINGER_PY} (see module docstring)")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "tap.py").write_text(textwrap.dedent(TAP))
        (d / "target.py").write_text(textwrap.dedent(TARGET))
        (d / "tap.json").write_text(json.dumps({"rows": n, "stream_maps": {"customers": {
            "__filter__": "bool(marketing_opt_in)",
            "email_hash": "sha256(email.strip().lower())",
            "email": "__NULL__"}}}))
        (d / "target.json").write_text("{}")
        env = {**os.environ, "BENCH_COUNT_FILE": str(d / "count")}
        cmd = (f"{SINGER_PY} {d / 'tap.py'} --config {d / 'tap.json'} 2>/dev/null | "
               f"{SINGER_PY} {d / 'target.py'} --config {d / 'target.json'} "
               f"> /dev/null 2>&1")
        t0 = time.perf_counter()
        subprocess.run(cmd, shell=True, check=True, env=env)
        seconds = time.perf_counter() - t0
        sent = int((d / "count").read_text())
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rows": n, "sent": sent, "seconds": seconds, "peak_rss_mb": rss}


def child(path: str, n: int, repeat: int) -> dict[str, Any]:
    """Run one path in a fresh process; returns its JSON result."""
    out = subprocess.run([sys.executable, __file__, "--only", path, "--rows", str(n),
                          "--repeat", str(repeat)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200k rows, 1 run, Singer 5k")
    ap.add_argument("--json", type=Path, help="write the result dict here")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--singer-rows", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=None, help="runs (3; --quick 1)")
    ap.add_argument("--no-singer", action="store_true")
    ap.add_argument("--only", choices=["conn", "conn_events", "bare", "singer"],
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    n = a.rows or (200_000 if a.quick else 1_000_000)
    a.repeat = a.repeat or (1 if a.quick else 3)
    if a.only:
        fn = {"conn": lambda: run_conn(n, a.repeat), "bare": lambda: run_bare(n, a.repeat),
              "conn_events": lambda: run_conn(n, a.repeat, events=True),
              "singer": lambda: run_singer(n)}[a.only]
        print(json.dumps(fn()))
        return
    singer_n = a.singer_rows or (5_000 if a.quick else 200_000)
    results = {"conn": child("conn", n, a.repeat), "bare pyarrow": child("bare", n, a.repeat),
               "conn (consent source)": child("conn_events", n, a.repeat)}
    if not a.no_singer:
        sys.path.insert(0, str(ROOT))
        from bench.full_sync import ensure_venv

        why = ensure_venv(SINGER_PY, create=not a.quick)
        if why is None:
            results["singer-sdk"] = child("singer", singer_n, 1)
        else:
            print(f"singer-sdk path skipped: {why}")
    print(f"consent gate + mapping: keep opted-in rows, normalise + SHA-256 e-mail "
          f"({os.cpu_count()} cores)")
    print(f"{'path':<24}{'rows':>10}{'sent':>10}{'seconds':>10}{'rows/s':>12}"
          f"{'peak RSS MB':>13}")
    rate = {}
    for name, r in results.items():
        rate[name] = r["rows"] / r["seconds"]
        note = " (extrapolated)" if r["rows"] != n else ""
        print(f"{name:<24}{r['rows']:>10,}{r['sent']:>10,}{r['seconds']:>10.3f}"
              f"{rate[name]:>12,.0f}{r['peak_rss_mb']:>13.0f}{note}")
    print(f"conn / bare pyarrow  = {rate['conn'] / rate['bare pyarrow']:.2f}x "
          f"(bare is {rate['bare pyarrow'] / rate['conn']:.2f}x conn; goal: within 1.5x)")
    if "singer-sdk" in rate:
        ran = results["singer-sdk"]["rows"]
        how = f"Singer ran {ran:,} rows, rows/s extrapolated" if ran != n else "same rows"
        print(f"conn / singer-sdk    = {rate['conn'] / rate['singer-sdk']:.0f}x "
              f"(goal >= 50x; {how})")
    if a.json:
        sys.path.insert(0, str(ROOT))
        from bench.common import environment

        ratios = {"conn/bare pyarrow": rate["conn"] / rate["bare pyarrow"]}
        goals = {"conn within 1.5x of bare pyarrow": rate["bare pyarrow"] / rate["conn"] <= 1.5}
        if "singer-sdk" in rate:
            ratios["conn/singer-sdk"] = rate["conn"] / rate["singer-sdk"]
            goals["conn >= 50x singer-sdk"] = ratios["conn/singer-sdk"] >= 50
        a.json.write_text(json.dumps({"scenario": "consent_mapping", "env": environment(),
                                      "quick": a.quick, "rows": n, "sides": results,
                                      "rows_per_s": rate, "ratios": ratios, "goals": goals},
                                     indent=2))


if __name__ == "__main__":
    main()

"""Scenarios 1 and 3: a first full sync Parquet → consent → mapping → Parquet files.

The job, on seeded synthetic customers (:func:`conn.demo.customers`, 70 % opted in):
keep the rows whose ``marketing_opt_in`` is true, normalise the e-mail (trim, lower) and
SHA-256 it, rename ``customer_id`` → ``id`` (cast to text), ``lifetime_value`` → ``ltv``,
cast ``health_score`` to a float, keep names, country and plan; write Parquet files.

Scenario 1 runs the same job on the same Parquet file, each side as its own child process
(so each peak RSS, from ``wait4``, is its own), and reports medians and ratios measured in
this one invocation:

* **conn**: ``conn sync src out`` in a fresh project folder (fresh state every run), with
  ``consent.columns.marketing``, the ``hash`` field policy on the e-mail and a mapping
  with renames and casts, into the ``files`` destination (Parquet, fsync on);
* **singer**: a singer-sdk tap reading the Parquet file piped into a singer-sdk target
  writing JSONL, the tap running a stream map with ``__filter__``, ``sha256(...)``, renames
  and casts (SDK defaults, so the target validates every record), in
  ``.venvs/bench-singer``; the venv path is shared with ``bench/consent_mapping.py``;
* **dlt**: a dlt resource yielding the transformed Arrow tables into dlt's ``filesystem``
  destination as Parquet (its Arrow path), in ``.venvs/bench-dlt``;
* **pyarrow**: a bare script, the near-limit: ``iter_batches``, ``filter``,
  ``utf8_trim_whitespace``/``utf8_lower``, DuckDB ``sha256`` (pyarrow has no SHA-256
  kernel), one ``ParquetWriter``.

Scenario 3 (growth) runs the conn side at 100k, 1M and 10M rows: time must grow linearly
or better and memory must be bounded by the batch size (peak at 10M ≤ 2x peak at 1M).

Goals: conn ≥ 50x the Singer path's rows/s, faster than dlt, within 1.5x of pyarrow.

    .venv/bin/python bench/full_sync.py                 # 1M rows; growth 100k/1M/10M
    .venv/bin/python bench/full_sync.py --quick         # 100k rows, 1 run, growth 10k/100k
    .venv/bin/python bench/full_sync.py --json out.json --singer-rows 200000

Generated Parquet files are cached under ``bench/data/`` (git-ignored). The extra venvs
are created with uv when missing (``--quick`` skips a reference whose venv is missing
rather than installing it). ``--singer-rows N`` runs Singer on the first N rows of the
same data and extrapolates its rows/s (shorter runs measure Singer faster per row, so
the ratio is conservative).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    DATA,
    ROOT,
    Measurement,
    environment,
    print_table,
    run_child,
)
from bench.consent_mapping import SINGER_PY

DLT_PY = ROOT / ".venvs" / "bench-dlt" / "bin" / "python"
VENV_PACKAGES = {SINGER_PY: ["singer-sdk", "pyarrow"], DLT_PY: ["dlt[duckdb]", "pyarrow"]}
SEED = 42
GEN_CHUNK = 1_000_000

PROJECT = """\
version: 1
sources:
  src: {{type: files, config: {{path: "{data}", primary_key: customer_id, name: customers}}}}
destinations:
  out:
    type: files
    purposes: [marketing]
    policies: {{email: hash}}
    config: {{path: out, format: parquet, objects: {{contacts: {{identifiers: [id]}}}}}}
syncs:
  customers:
    source: src
    stream: customers
    destination: out
    object: contacts
    match_key: id
    personal: {{email: email}}
    consent: {{columns: {{marketing: marketing_opt_in}}}}
    mapping:
      id: {{from: customer_id, cast: string}}
      email_sha256: email
      first_name: first_name
      last_name: last_name
      country: country
      plan: plan
      ltv: lifetime_value
      health: {{from: health_score, cast: number}}
"""

# The transformation of the pyarrow and dlt sides (one copy, imported by both scripts).
TRANSFORM = '''
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

_con = duckdb.connect()


def transform(b):
    """Filter on consent, normalise + SHA-256 the e-mail, rename and cast."""
    b = b.filter(pc.fill_null(b.column("marketing_opt_in"), False))
    email = pc.utf8_lower(pc.utf8_trim_whitespace(b.column("email")))
    email = pc.if_else(pc.equal(email, ""), pa.scalar(None, pa.string()), email)
    _t = pa.table({"v": email})
    h = _con.sql("select sha256(v) from _t").to_arrow_table().column(0)
    return pa.table({
        "id": pc.cast(b.column("customer_id"), pa.string()),
        "email_sha256": h,
        "first_name": b.column("first_name"),
        "last_name": b.column("last_name"),
        "country": b.column("country"),
        "plan": b.column("plan"),
        "ltv": b.column("lifetime_value"),
        "health": pc.cast(b.column("health_score"), pa.float64()),
    })
'''

BARE = '''
import json, sys
import pyarrow.parquet as pq
from _transform import transform

src, batch, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
writer = None
sent = 0
for b in pq.ParquetFile(src).iter_batches(batch_size=batch):
    t = transform(b)
    if writer is None:
        writer = pq.ParquetWriter(out, t.schema)
    writer.write_table(t)
    sent += t.num_rows
writer.close()
print(json.dumps({"sent": sent}))
'''

DLT = '''
import json, sys
import dlt
import pyarrow.parquet as pq
from _transform import transform

src, batch, out, work = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


@dlt.resource(name="contacts", write_disposition="append")
def contacts():
    for b in pq.ParquetFile(src).iter_batches(batch_size=batch):
        yield transform(b)


pipe = dlt.pipeline(pipeline_name="bench", pipelines_dir=work,
                    destination=dlt.destinations.filesystem(bucket_url=out),
                    dataset_name="crm")
info = pipe.run(contacts(), loader_file_format="parquet")
sent = pipe.last_trace.last_normalize_info.row_counts.get("contacts", 0)
print(json.dumps({"sent": sent}))
'''

TAP = '''
import datetime
import pyarrow.parquet as pq
from singer_sdk import Stream, Tap
from singer_sdk import typing as th


class Customers(Stream):
    name = "customers"
    primary_keys = ("customer_id",)
    schema = th.PropertiesList(
        th.Property("customer_id", th.IntegerType, required=True),
        th.Property("email", th.StringType),
        th.Property("first_name", th.StringType),
        th.Property("last_name", th.StringType),
        th.Property("country", th.StringType),
        th.Property("phone", th.StringType),
        th.Property("plan", th.StringType),
        th.Property("lifetime_value", th.NumberType),
        th.Property("health_score", th.IntegerType),
        th.Property("marketing_opt_in", th.BooleanType),
        th.Property("signed_up_at", th.DateTimeType),
        th.Property("updated_at", th.DateTimeType),
    ).to_dict()

    def get_records(self, context):
        left = int(self.config["rows"])
        for b in pq.ParquetFile(self.config["path"]).iter_batches(batch_size=10_000):
            for r in b.slice(0, left).to_pylist():
                yield r
            left -= b.num_rows
            if left <= 0:
                return


class TapParquet(Tap):
    name = "tap-bench-parquet"
    config_jsonschema = th.PropertiesList(th.Property("path", th.StringType),
                                          th.Property("rows", th.IntegerType)).to_dict()

    def discover_streams(self):
        return [Customers(self)]


if __name__ == "__main__":
    TapParquet.cli()
'''

TARGET = '''
import json
from singer_sdk import Target
from singer_sdk.sinks import BatchSink


class JsonlSink(BatchSink):
    def process_batch(self, context):
        with open(self.config["path"], "a") as f:
            for r in context["records"]:
                f.write(json.dumps(r, default=str) + "\\n")


class TargetJsonl(Target):
    name = "target-bench-jsonl"
    default_sink_class = JsonlSink


if __name__ == "__main__":
    TargetJsonl.cli()
'''

STREAM_MAP = {"customers": {
    "__filter__": "bool(marketing_opt_in)",
    "__key_properties__": ["id"],
    "id": "str(customer_id)",
    "email_sha256": "sha256(email.strip().lower()) if email and email.strip() else None",
    "first_name": "first_name",
    "last_name": "last_name",
    "country": "country",
    "plan": "plan",
    "ltv": "lifetime_value",
    "health": "float(health_score)",
    "__else__": "__NULL__",
}}


# --- data and environments ----------------------------------------------------------


def data_file(n: int) -> Path:
    """The cached Parquet file of ``n`` seeded customers (generated on first use)."""
    path = DATA / f"customers-{n}.parquet"
    if path.exists():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from conn.demo import customers

    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(SEED)
    writer = None
    for lo in range(0, n, GEN_CHUNK):  # chunks keep generating 10M rows within ~2 GB
        t = customers(min(GEN_CHUNK, n - lo), rng)
        if lo:
            ids = pc.add(t.column("customer_id"), pa.scalar(lo, pa.int64()))
            t = t.set_column(0, "customer_id", ids)
        writer = writer or pq.ParquetWriter(tmp, t.schema)
        writer.write_table(t, row_group_size=128 * 1024)
    assert writer is not None
    writer.close()
    tmp.rename(path)
    return path


def ensure_venv(python: Path, create: bool) -> str | None:
    """Make sure a reference venv exists; return why it cannot be used, or None."""
    if python.exists():
        return None
    if not create:
        return f"{python.parent.parent.relative_to(ROOT)} missing (run without --quick " \
               f"once to create it)"
    uv = ROOT / ".venv" / "bin" / "uv"
    uv_cmd = str(uv) if uv.exists() else shutil.which("uv")
    if not uv_cmd:
        return "uv not found: cannot create the reference venv"
    venv = python.parent.parent
    print(f"creating {venv.relative_to(ROOT)} ...", flush=True)
    try:
        subprocess.run([uv_cmd, "venv", "--quiet", "--python", sys.executable, str(venv)],
                       check=True)
        subprocess.run([uv_cmd, "pip", "install", "--quiet", "--python", str(python),
                        *VENV_PACKAGES[python]], check=True)
    except subprocess.CalledProcessError as exc:
        return f"could not create {venv}: {exc}"
    return None


def conn_bin() -> str:
    exe = Path(sys.executable).parent / "conn"
    return str(exe) if exe.exists() else (shutil.which("conn") or "conn")


# --- the sides ---------------------------------------------------------------------


def seed_suppression(proj: Path, n: int) -> None:
    """Give the project's state a suppression list of ``n`` people (``conn forget``'s
    tables, filled directly: HMAC digests of addresses that are not in the data)."""
    import pyarrow as pa
    from conn.privacy.identifiers import digests
    from conn.state.backends.duckdb.store import DuckDBStateStore

    privacy = DuckDBStateStore.open(None, proj).privacy()
    salt = privacy.salt()
    listed = digests(pa.array([f"gone-{i}@example.net" for i in range(n)]), salt)
    privacy.suppress(listed.to_pylist(), "bench")


def conn_side(name: str, data: Path, rows: int, runs: int, warmup: int, work: Path,
              expect: int | None = None, env: dict[str, str] | None = None,
              suppressed: int = 0) -> tuple[Measurement, int]:
    """``conn sync`` in a fresh project folder per run; returns the measurement and the
    rows sent (from ``--json``). ``suppressed``: people on the project's suppression list
    (seeded before the run, not timed)."""
    m = Measurement(name, rows)
    sent = -1
    for i in range(warmup + runs):
        proj = work / f"conn-{rows}-{i}"
        proj.mkdir()
        (proj / "conn.yml").write_text(PROJECT.format(data=data))
        if suppressed:
            seed_suppression(proj, suppressed)
        wall, rss, out = run_child([conn_bin(), "sync", "src", "out", "--json"], env=env,
                                   cwd=proj)
        report = json.loads(out)
        sync = report["syncs"][0]
        assert report["status"] == "ok", report
        sent = int(sync["inserted"])
        if expect is not None:
            assert sent == expect, (sent, expect)
        shutil.rmtree(proj)
        if i >= warmup:
            m.seconds.append(wall)
            m.max_rss_mb.append(rss)
    return m, sent


def script_side(name: str, python: Path, script: str, args: list[str], rows: int, runs: int,
                warmup: int, work: Path, out_of: Any, extra_of: Any = None,
                note: str = "") -> tuple[Measurement, int]:
    """A reference script under ``python``, run as ``main.py *args OUT *extra``:
    ``out_of(i)`` gives run i's output path, ``extra_of(i)`` more arguments."""
    d = work / name.split()[0]
    d.mkdir(exist_ok=True)
    (d / "_transform.py").write_text(textwrap.dedent(TRANSFORM))
    (d / "main.py").write_text(textwrap.dedent(script))
    m = Measurement(name, rows, note=note)
    sent = -1
    for i in range(warmup + runs):
        out = out_of(i)
        extra = extra_of(i) if extra_of else []
        wall, rss, stdout = run_child([str(python), str(d / "main.py"), *args, str(out),
                                       *extra], cwd=d)
        sent = int(json.loads(stdout.strip().splitlines()[-1])["sent"])
        if i >= warmup:
            m.seconds.append(wall)
            m.max_rss_mb.append(rss)
    return m, sent


def singer_side(data: Path, rows: int, runs: int, work: Path) -> tuple[Measurement, int]:
    """tap | target in one shell pipeline (peak RSS: the larger process's)."""
    d = work / "singer"
    d.mkdir(exist_ok=True)
    (d / "tap.py").write_text(textwrap.dedent(TAP))
    (d / "target.py").write_text(textwrap.dedent(TARGET))
    (d / "tap.json").write_text(json.dumps({"path": str(data), "rows": rows,
                                            "stream_maps": STREAM_MAP}))
    m = Measurement("singer-sdk tap | target", rows,
                    note="SDK defaults (record validation on), JSONL out")
    sent = -1
    for i in range(runs):
        out = d / f"out-{i}.jsonl"
        (d / "target.json").write_text(json.dumps({"path": str(out)}))
        cmd = [str(SINGER_PY), str(d / "tap.py"), "--config", str(d / "tap.json"),
               "2>/dev/null", "|", str(SINGER_PY), str(d / "target.py"), "--config",
               str(d / "target.json"), ">/dev/null", "2>&1"]
        wall, rss, _ = run_child(cmd, shell=True, cwd=d)
        with out.open("rb") as f:
            sent = sum(1 for _ in f)
        out.unlink()
        m.seconds.append(wall)
        m.max_rss_mb.append(rss)
    return m, sent


# --- the scenarios -----------------------------------------------------------------


def scenario1(n: int, runs: int, quick: bool, singer_rows: int | None, work: Path,
              skip: set[str], no_kernels: bool = False, suppressed: int = 0
              ) -> dict[str, Any]:
    data = data_file(n)
    batch = 65_536
    results: dict[str, Measurement] = {}
    sent: dict[str, int] = {}
    skipped: dict[str, str] = {}

    m, sent["pyarrow"] = script_side(
        "bare pyarrow", Path(sys.executable), BARE, [str(data), str(batch)], n, runs, 1, work,
        lambda i: work / f"bare-{i}.parquet")
    results["pyarrow"] = m
    results["conn"], sent["conn"] = conn_side("conn sync", data, n, runs, 1, work)
    if no_kernels:  # as on a machine where conn-speedups could not be built
        results["conn-no-kernels"], sent["conn-no-kernels"] = conn_side(
            "conn sync, no kernels", data, n, runs, 1, work, env={"CONN_SPEEDUPS": "0"})
    if suppressed:  # the consent gate's suppression check (docs/privacy.md)
        results["conn-suppressed"], sent["conn-suppressed"] = conn_side(
            f"conn sync, {suppressed:,} suppressed", data, n, runs, 1, work,
            suppressed=suppressed)
    if "dlt" in skip:
        skipped["dlt"] = "--skip dlt"
    elif (why := ensure_venv(DLT_PY, create=not quick)) is not None:
        skipped["dlt"] = why
    else:
        results["dlt"], sent["dlt"] = script_side(
            "dlt (Arrow → filesystem Parquet)", DLT_PY, DLT, [str(data), str(batch)], n, runs,
            1, work, lambda i: work / f"dlt-out-{i}",
            lambda i: [str(work / f"dlt-{i}")])  # a fresh pipelines_dir per run
    if "singer" in skip:
        skipped["singer"] = "--skip singer"
    elif (why := ensure_venv(SINGER_PY, create=not quick)) is not None:
        skipped["singer"] = why
    else:
        s_rows = min(n, singer_rows or (5_000 if quick else n))
        results["singer"], sent["singer"] = singer_side(data, s_rows, 1, work)
    for k, v in sent.items():
        print(f"  {k}: sent {v:,} rows", flush=True)

    rate = {k: v.rows_per_s for k, v in results.items()}
    ratios: dict[str, float] = {}
    goals: dict[str, bool] = {}
    if "singer" in rate:
        ratios["conn/singer"] = rate["conn"] / rate["singer"]
        goals["conn >= 50x singer"] = ratios["conn/singer"] >= 50
    if "dlt" in rate:
        ratios["conn/dlt"] = rate["conn"] / rate["dlt"]
        goals["conn faster than dlt"] = ratios["conn/dlt"] > 1
    ratios["conn/pyarrow"] = rate["conn"] / rate["pyarrow"]
    if "conn-no-kernels" in rate:
        ratios["conn/conn-no-kernels"] = rate["conn"] / rate["conn-no-kernels"]
    if "conn-suppressed" in rate:
        ratios["conn/conn-suppressed"] = rate["conn"] / rate["conn-suppressed"]
    goals["conn within 1.5x of pyarrow"] = (results["conn"].median_s
                                            <= 1.5 * results["pyarrow"].median_s)
    rows = [[m.name, m.rows, len(m.seconds), m.median_s, m.rows_per_s, m.peak_mb,
             (m.note + (" (rows/s extrapolated)" if m.rows != n else "")).strip()]
            for m in results.values()]
    print_table(f"scenario 1: first full sync of {n:,} rows (medians)", rows,
                ["side", "rows", "runs", "median s", "rows/s", "peak MB", "note"])
    for k, why in skipped.items():
        print(f"skipped {k}: {why}")
    print("ratios of rows/s (same run): " + ", ".join(f"{k} = {v:,.2f}x"
                                                     for k, v in ratios.items()))
    print("pyarrow/conn time: "
          f"conn takes {results['conn'].median_s / results['pyarrow'].median_s:.2f}x "
          "the bare pass")
    for g, ok in goals.items():
        print(f"  goal {g}: {'met' if ok else 'MISSED'}")
    return {"rows": n, "sides": {k: v.as_dict() for k, v in results.items()},
            "sent": sent, "skipped": skipped, "ratios": ratios, "goals": goals}


def scenario3(sizes: list[int], runs: dict[int, int], work: Path,
              known: dict[int, Measurement]) -> dict[str, Any]:
    results: dict[int, Measurement] = {}
    for n in sizes:
        if n in known:
            results[n] = known[n]
            continue
        data = data_file(n)
        print(f"  growth: conn sync of {n:,} rows x {runs[n]} ...", flush=True)
        results[n], _ = conn_side(f"conn sync {n:,}", data, n, runs[n], 0, work)
    rows = [[n, m.median_s, m.rows_per_s, m.peak_mb, m.median_s / m.rows * 1e6]
            for n, m in results.items()]
    print_table("scenario 3: growth of conn sync (medians)", rows,
                ["rows", "median s", "rows/s", "peak MB", "µs/row"])
    mid, hi = (sizes[-2], sizes[-1]) if len(sizes) > 1 else (sizes[0], sizes[0])
    t_per_row = {n: m.median_s / n for n, m in results.items()}
    goals = {
        # linear or better: the cost per row does not rise with size (10 % noise allowed)
        "time linear or better": all(t_per_row[b] <= 1.1 * t_per_row[a]
                                     for a, b in itertools.pairwise(sizes)),
        f"peak at {hi:,} <= 2x peak at {mid:,}": results[hi].peak_mb
        <= 2 * results[mid].peak_mb,
    }
    for g, ok in goals.items():
        print(f"  goal {g}: {'met' if ok else 'MISSED'}")
    return {"sides": {str(n): m.as_dict() for n, m in results.items()}, "goals": goals,
            "ratios": {f"peak {hi}/{mid}": results[hi].peak_mb / results[mid].peak_mb,
                       f"time {hi}/{mid}": results[hi].median_s / results[mid].median_s}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="100k rows (Singer 5k, extrapolated), 1 run, growth 10k/100k; "
                        "references only if their venv exists")
    p.add_argument("--rows", type=int, help="scenario 1 rows (1,000,000)")
    p.add_argument("--runs", type=int, help="runs per side after a warm-up (3)")
    p.add_argument("--singer-rows", type=int,
                   help="run Singer on the first N rows only and extrapolate")
    p.add_argument("--growth", type=int, nargs="*",
                   help="scenario 3 sizes (100000 1000000 10000000); none to skip")
    p.add_argument("--skip", nargs="*", default=[], choices=["singer", "dlt"])
    p.add_argument("--no-kernels", action="store_true",
                   help="also run conn with CONN_SPEEDUPS=0 (no compiled kernels)")
    p.add_argument("--suppressed", type=int, default=0, metavar="N",
                   help="also run conn with N people on the suppression list")
    p.add_argument("--json", type=Path, help="write the result dict here")
    a = p.parse_args(argv)
    n = a.rows or (100_000 if a.quick else 1_000_000)
    runs = a.runs or (1 if a.quick else 3)
    sizes = a.growth if a.growth is not None else (
        [10_000, 100_000] if a.quick else [100_000, 1_000_000, 10_000_000])
    with tempfile.TemporaryDirectory(prefix="conn-bench-") as tmp:
        work = Path(tmp)
        s1 = scenario1(n, runs, a.quick, a.singer_rows, work, set(a.skip), a.no_kernels,
                       a.suppressed)
        s3 = None
        if sizes:
            known = {n: Measurement(f"conn sync {n:,}", n,
                                    **{k: s1["sides"]["conn"][k]
                                       for k in ("seconds", "max_rss_mb")})}
            growth_runs = {s: (1 if a.quick else (2 if s >= 10_000_000 else 3))
                           for s in sizes}
            s3 = scenario3(sizes, growth_runs, work, known)
    goals = {**{f"s1: {k}": v for k, v in s1["goals"].items()},
             **({f"s3: {k}": v for k, v in s3["goals"].items()} if s3 else {})}
    if a.json:
        a.json.write_text(json.dumps({
            "scenario": "full_sync", "env": environment(), "quick": a.quick,
            "command": " ".join(["python", "bench/full_sync.py", *(argv or sys.argv[1:])]),
            "scenario1": s1, "scenario3": s3, "ratios": s1["ratios"], "goals": goals},
            indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

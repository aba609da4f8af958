"""Benchmark of identity stitching (``conn profiles build``'s engine) against DuckDB SQL
label propagation, on the same identifier graph.

The graph: ``--people`` people (2M by default), each seen as a CRM contact (60 %:
customer_id, e-mail, a phone for half of them), an app user (e-mail, device) and an
event (anonymous id, device): about 5.4 identifier edges (record, identifier) per
person, 10.8M in all. Record keys are 64-bit hashes, in no order, as ``conn profiles
build`` makes them (keys numbered in order made sorting, binary search and the graph's
memory accesses look several times cheaper than they are). Planted: 0.1 % of app users
typed ``test@test.com`` (junk: one value that would join 2,000 people), and 0.5 % of
people share their e-mail with another customer (the customer_id limit must keep them
apart).

Sides, each in its own process (wall time inside the process, peak RSS of the process),
medians of ``--runs``:

* ``stitch full``: :func:`conn.profiles.engine.build` from nothing: encoding, junk,
  rounds under the limits (customer_id 1, e-mail 3), islands, ids, merges/splits.
* ``stitch rebuild``: the same data again with the first build as previous state
  (``full=True``): every component re-stitched, ids matched to the stored ones.
* ``stitch incremental``: 1 % new edges (new event records of existing people, and new
  people), with the first build as previous state (records, entries, junk): every
  edge is handed over, as ``conn profiles build`` reads them, and the engine finds the
  new and vanished records itself (a lookup of each entry's record in the last build);
  only the touched values are counted and only the touched islands encoded and
  stitched.
* ``stitch changes``: the same 1 % handed over alone
  (:func:`conn.profiles.engine.build_changes`, for a caller that knows what changed):
  the same profiles without reading the other 99 %.
* ``duckdb label propagation``: iterative min-label propagation in DuckDB SQL over the
  same record-identifier edges (no limits, no junk rule: less work than conn does).
* ``splink``: Splink's deterministic linking, when ``splink`` is installed: on the
  e-mail rule alone, and on one rule per identifier type (the same identifiers conn
  stitches; no limits, no junk rule).

Checks printed with the figures: merges beyond the limits (0 expected), the junk value
detected, and id stability of a full rebuild (100 % expected).

    .venv/bin/python bench/profiles.py               # 2M people, ~10.8M edges
    .venv/bin/python bench/profiles.py --quick       # 20k people, 1 run
    .venv/bin/python bench/profiles.py --sides rebuild --workdir /tmp/p  # one side,
                                                     # the data kept for the next call
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEP = "\x1f"


def _ident(kind: str, prefix: str, ids: np.ndarray, suffix: str = "") -> pa.Array:
    return pc.binary_join_element_wise(f"{kind}{SEP}{prefix}", pc.cast(pa.array(ids),
                                       pa.string()), suffix, "")


def record_keys(ids: np.ndarray) -> np.ndarray:
    """Record keys as ``conn profiles build`` makes them: a 64-bit hash of the record's
    identifiers (here splitmix64 of a record number), so they come in no order, as the
    edges' DuckDB query gives them (numbered keys in order would favour sorting and
    binary search)."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def make_entries(people: int, seed: int = 7, start: int = 0,
                 junk_min: int = 150) -> pa.Table:
    """The identifier edges of ``people`` people (ids from ``start``). At least 150
    app users typed the junk e-mail (0.1 %, or more in a small run), so that it is over
    the default junk threshold (100 records) at every size."""
    rng = np.random.default_rng(seed)
    p = np.arange(start, start + people, dtype=np.int64)
    parts = []
    # Shared family e-mails: 0.5 % of people use the e-mail of the person before them.
    email_of = p.copy()
    fam = rng.random(people) < 0.005
    email_of[fam] = np.maximum(p[fam] - 1, start)
    crm = p[rng.random(people) < 0.6]
    rk = record_keys(np.uint64(1 << 40) + crm.astype(np.uint64))
    parts.append((rk, _ident("customer_id", "c", crm)))
    parts.append((rk, _ident("email", "u", email_of[crm - start], "@example.com")))
    ph = rng.random(len(crm)) < 0.5
    parts.append((rk[ph], _ident("phone", "44", 7_000_000_000 + crm[ph])))
    # App users: e-mail and device; 0.1 % typed the junk e-mail.
    rk = record_keys(np.uint64(2 << 40) + p.astype(np.uint64))
    junk = rng.random(people) < max(0.001, min(1.0, junk_min / people))
    mail = _ident("email", "u", email_of, "@example.com")
    mail = pc.if_else(pa.array(junk), pa.scalar(f"email{SEP}test@test.com"), mail)
    parts.append((rk, mail))
    parts.append((rk, _ident("device_id", "d", p)))
    # Events: anonymous id and device.
    rk = record_keys(np.uint64(3 << 40) + p.astype(np.uint64))
    parts.append((rk, _ident("anonymous_id", "a", p)))
    parts.append((rk, _ident("device_id", "d", p)))
    return pa.table({"rkey": pa.array(np.concatenate([r for r, _ in parts]), pa.uint64()),
                     "ident": pa.concat_arrays([i.cast(pa.string()) for _, i in parts])})


def more_entries(people: int, share: float, seed: int = 11) -> pa.Table:
    """``share`` of the edges again as new ones: half new events of existing people
    (a new anonymous id on their device), half new people."""
    n = max(1, int(people * 5.4 * share / 4))
    rng = np.random.default_rng(seed)
    who = rng.integers(0, people, n)
    rk = record_keys(np.uint64(4 << 40) + np.arange(n, dtype=np.uint64))
    new_people = make_entries(n // 2, seed=seed + 1, start=people * 2, junk_min=0)
    return pa.concat_tables([
        pa.table({"rkey": pa.array(np.concatenate([rk, rk]), pa.uint64()),
                  "ident": pa.concat_arrays([
                      _ident("anonymous_id", "n", np.arange(n)).cast(pa.string()),
                      _ident("device_id", "d", who).cast(pa.string())])}),
        new_people])


RULES_ARGS = dict(
    types=("customer_id", "email", "phone", "device_id", "anonymous_id"),
    rounds=(("customer_id",), ("email",), ("phone",), ("device_id",), ("anonymous_id",)),
    limits={"customer_id": 1, "email": 3},
    max_records={"customer_id": 100, "email": 100, "phone": 100, "device_id": 100,
                 "anonymous_id": 100},
)


# --- sides, run in child processes ---------------------------------------------------


def side_conn(data: Path, mode: str, out: Path | None) -> dict:
    import duckdb  # imported before the clock starts, as in a warm process
    import scipy.sparse.csgraph  # noqa: F401
    from conn.profiles.engine import Previous, Rules, build, build_changes, empty_previous

    rules = Rules(**RULES_ARGS)  # type: ignore[arg-type]
    entries = pq.read_table(data / "entries.parquet")
    previous = empty_previous()
    if mode in ("rebuild", "incremental", "changes"):
        # The entries as the store keeps them: with each identifier's hash.
        con = duckdb.connect()
        con.register("e", entries)
        hashed = entries.append_column("h", con.sql("SELECT hash(ident) AS h FROM e")
                                       .to_arrow_table().column("h"))
        con.close()
        previous = Previous(pq.read_table(data / "records.parquet"), hashed,
                            pq.read_table(data / "junk.parquet"))
    more = pq.read_table(data / "more.parquet")
    if mode == "incremental":
        entries = pa.concat_tables([entries, more])
    t0 = time.perf_counter()
    if mode == "changes":
        result = build_changes(more, pa.array([], pa.uint64()), rules, previous)
    else:
        result = build(entries, rules, previous, full=mode == "rebuild")
    seconds = time.perf_counter() - t0
    if mode == "changes":  # the records not re-stitched keep their profiles
        assert result.delta is not None
        dropped = pc.is_in(previous.records.column("rkey"), result.delta.dropped)
        result.records = pa.concat_tables([previous.records.filter(pc.invert(dropped)),
                                           result.records])
    info: dict = {"seconds": seconds, "records": result.records.num_rows,
                  "restitched": result.restitched, "entries": entries.num_rows,
                  "profiles": len(pc.unique(result.records.column("profile"))),
                  "junk": result.junk.column("ident").to_pylist()[:5],
                  "changes": result.changes.num_rows,
                  "records_digest": _digest(result.records) if mode in (
                      "incremental", "changes") else None}
    if mode == "full":
        pq.write_table(result.records, out or data / "records-last.parquet")
        pq.write_table(result.junk, (out or data / "records-last.parquet").with_name(
            "junk.parquet" if out else "junk-last.parquet"))
    if mode == "rebuild":
        # The check after the clock is not the build's peak: the previous records (the
        # first build) are compared as loaded, the edges dropped before.
        first = previous.records
        del previous, entries
        pa.default_memory_pool().release_unused()
        a = first.column("profile").take(pc.sort_indices(first.column("rkey")))
        b = result.records.column("profile").take(
            pc.sort_indices(result.records.column("rkey")))
        info["stable_ids"] = pc.sum(pc.equal(a, b)).as_py() / first.num_rows
    return info


def _digest(records: pa.Table) -> str:
    """A digest of every record's key and profile, in key order (after the clock)."""
    import hashlib

    ordered = records.select(["rkey", "profile"]).sort_by("rkey").combine_chunks()
    h = hashlib.sha256()
    for col in ordered.columns:
        for buf in col.chunk(0).buffers():  # one chunk, no slice: whole buffers are its own
            if buf is not None:
                h.update(buf)
    return h.hexdigest()[:16]


def over_limit(entries: pa.Table, records: pa.Table) -> int:
    """Profiles holding more customer ids or e-mails than their limits (0 expected)."""
    import duckdb

    con = duckdb.connect()
    con.register("e", entries)
    con.register("r", records)
    return con.sql("""
        SELECT count(*) FROM (
          SELECT r.profile,
                 count(DISTINCT ident) FILTER (WHERE ident LIKE 'customer_id%') AS c,
                 count(DISTINCT ident) FILTER (WHERE ident LIKE 'email%' AND
                     ident <> 'email' || chr(31) || 'test@test.com') AS m
          FROM e JOIN r USING (rkey) GROUP BY 1) WHERE c > 1 OR m > 3""").fetchall()[0][0]


def side_duckdb(data: Path) -> dict:
    """Iterative min-label propagation over the bipartite record-identifier graph."""
    import duckdb

    con = duckdb.connect()
    t0 = time.perf_counter()
    con.execute(f"CREATE TABLE e AS SELECT rkey, ident FROM "
                f"read_parquet('{data / 'entries.parquet'}')")
    con.execute("CREATE TABLE lab AS SELECT DISTINCT rkey, rkey AS l FROM e")
    rounds = 0
    while True:
        rounds += 1
        con.execute("""
            CREATE OR REPLACE TABLE nl AS
            WITH il AS (SELECT e.ident, min(lab.l) AS l FROM e JOIN lab USING (rkey)
                        GROUP BY e.ident)
            SELECT e.rkey, min(il.l) AS l FROM e JOIN il USING (ident) GROUP BY e.rkey""")
        changed = con.execute("SELECT count(*) FROM nl JOIN lab USING (rkey) "
                              "WHERE nl.l <> lab.l").fetchall()[0][0]
        con.execute("CREATE OR REPLACE TABLE lab AS SELECT * FROM nl")
        if not changed:
            break
    clusters = con.execute("SELECT count(DISTINCT l) FROM lab").fetchall()[0][0]
    return {"seconds": time.perf_counter() - t0, "iterations": rounds,
            "profiles": clusters}


#: The identifier types of the graph, each a deterministic rule on Splink's side.
TYPES = ("customer_id", "email", "phone", "device_id", "anonymous_id")


def side_splink(data: Path, rules: tuple[str, ...]) -> dict:
    """Splink's deterministic linking: records as rows with one column per identifier
    type (each record holds at most one value of a type here), a pair wherever one of
    ``rules`` (columns) is equal, then connected components of the pairs. No limits and
    no junk rule: less work than conn does."""
    import duckdb
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    con = duckdb.connect()
    columns = ", ".join(
        f"any_value(substr(ident, strpos(ident, chr(31)) + 1)) FILTER "
        f"(WHERE ident LIKE '{t}' || chr(31) || '%') AS {t}" for t in rules)
    rows = con.sql(f"""
        SELECT rkey AS unique_id, {columns}
        FROM read_parquet('{data / 'entries.parquet'}') GROUP BY rkey""").to_arrow_table()
    t0 = time.perf_counter()
    settings = SettingsCreator(link_type="dedupe_only",
                               blocking_rules_to_generate_predictions=[
                                   block_on(t) for t in rules])
    # Splink 5 takes a table registered with its database API (an Arrow table: no
    # pandas needed) and answers in Arrow too.
    db = DuckDBAPI()
    linker = Linker(db.register(rows), settings, log_level=None)
    pairs = linker.inference.deterministic_link()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pairs)
    n = clusters.as_pyarrow_table().num_rows
    return {"seconds": time.perf_counter() - t0, "rows": n}


# --- the driver -------------------------------------------------------------------------


def run_side(data: Path, side: str, runs: int, extra: list[str] | None = None
             ) -> tuple[list[dict], list[float]]:
    from bench.common import run_child

    infos, rss = [], []
    for _ in range(runs):
        _, peak, out = run_child([sys.executable, __file__, "--side", side, "--data",
                                  str(data), *(extra or [])])
        infos.append(json.loads(out.strip().splitlines()[-1]))
        rss.append(peak)
    return infos, rss


#: The sides by their --sides name, with their labels.
SIDES = {"full": "stitch full", "rebuild": "stitch rebuild",
         "incremental": "stitch incremental (1 % new edges)",
         "changes": "stitch changes (the 1 % alone)",
         "duckdb": "duckdb label propagation", "splink": "splink deterministic (e-mail)",
         "splink-all": "splink deterministic (5 identifier rules)"}
CONN_SIDES = ("full", "rebuild", "incremental", "changes")


def _prepare(data: Path, people: int) -> Path:
    """The edges, the 1 % more and the first build (the previous state of the rebuild
    and incremental sides) in ``data``, made unless a call with the same ``people``
    left them there."""
    data.mkdir(parents=True, exist_ok=True)
    stamp = data / "people.txt"
    if stamp.exists() and stamp.read_text() == str(people):
        return data
    pq.write_table(make_entries(people), data / "entries.parquet")
    pq.write_table(more_entries(people, 0.01), data / "more.parquet")
    run_side(data, "conn-full", 1, ["--out", str(data / "records.parquet")])
    stamp.write_text(str(people))
    return data


def _checks(s: dict, over: int, full: float | None) -> dict:
    """The checks printed under the table, of the sides that ran."""
    checks: dict = {"merges_beyond_limits": over}
    if "stitch full" in s:
        f = s["stitch full"]["info"]
        checks.update(profiles=f["profiles"], junk_found=f["junk"])
    if "stitch rebuild" in s:
        checks["stable_ids_on_rebuild"] = s["stitch rebuild"]["info"]["stable_ids"]
    inc = s.get("stitch incremental (1 % new edges)")
    if inc:
        checks["incremental_restitched_records"] = inc["info"]["restitched"]
        if full:
            checks["incremental_share_of_full"] = inc["median_s"] / full
    changes = s.get("stitch changes (the 1 % alone)")
    if changes:
        if inc:  # the same profiles, whichever way the changes arrived
            checks["changes_records_equal_incremental"] = \
                changes["info"]["records_digest"] == inc["info"]["records_digest"]
        if full:
            checks["changes_share_of_full"] = changes["median_s"] / full
    duck = s.get("duckdb label propagation")
    if duck:
        checks["duckdb_iterations"] = duck["info"]["iterations"]
        if full:
            checks["duckdb_over_conn"] = duck["median_s"] / full
    return checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20k people, 1 run")
    ap.add_argument("--json", type=Path, help="also write the result dict here")
    ap.add_argument("--sides", default=",".join(SIDES),
                    help=f"comma-separated, of: {', '.join(SIDES)} (default: all)")
    ap.add_argument("--workdir", type=Path,
                    help="keep the generated data (and the first build) here and reuse "
                         "them when present (same --people): sides measured one call "
                         "at a time")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        if args.side == "check":
            info = {"over_limit": over_limit(pq.read_table(args.data / "entries.parquet"),
                                             pq.read_table(args.data / "records.parquet"))}
        elif args.side.startswith("conn-"):
            info = side_conn(args.data, args.side[5:], args.out)
        elif args.side == "duckdb":
            info = side_duckdb(args.data)
        else:
            info = side_splink(args.data, TYPES if args.side == "splink-all" else ("email",))
        print(json.dumps(info, default=str))
        return 0
    if args.quick:
        args.people, args.runs = 20_000, 1
    from bench.common import print_table

    chosen = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(chosen) - set(SIDES)
    if unknown:
        ap.error(f"unknown sides: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="conn-bench-profiles-") as tmp:
        data = _prepare(args.workdir or Path(tmp), args.people)
        (limits,), _ = run_side(data, "check", 1)
        if {"splink", "splink-all"} & set(chosen):
            try:
                import splink  # noqa: F401
            except ImportError:
                print("splink is not installed: its sides are left out")
                chosen = [c for c in chosen if not c.startswith("splink")]
        sides = {SIDES[c]: ("conn-" + c if c in CONN_SIDES else c) for c in chosen}
        edges = pq.ParquetFile(data / "entries.parquet").metadata.num_rows
        results: dict = {"people": args.people, "edges": edges, "sides": {}}
        for label, side in sides.items():
            infos, rss = run_side(data, side, args.runs)
            med = statistics.median(i["seconds"] for i in infos)
            results["sides"][label] = {"median_s": med, "peak_mb": statistics.median(rss),
                                       "runs": [i["seconds"] for i in infos],
                                       "info": infos[-1]}
    s = results["sides"]
    full = s["stitch full"]["median_s"] if "stitch full" in s else None
    rows = [[k, v["median_s"], v["peak_mb"], full and v["median_s"] / full]
            for k, v in s.items()]
    print_table(f"stitching {results['edges']:,} identifier edges of {args.people:,} people "
                f"(medians of {args.runs})", rows,
                ["side", "seconds", "peak MB", "x stitch full"])
    results["checks"] = _checks(s, limits["over_limit"], full)
    for k, v in results["checks"].items():
        print(f"{k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

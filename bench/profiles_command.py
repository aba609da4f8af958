"""Benchmark of the whole ``conn profiles build`` command, as a user runs it: read the
edge streams from a DuckDB warehouse, stitch, keep ids, compute golden records, store
them. ``bench/profiles.py`` measures the stitching engine alone against DuckDB SQL and
Splink; this one shows what the rest of a build costs around it.

The warehouse, ``--people`` people (2M by default), the graph of ``bench/profiles.py``
as tables: ``contacts`` (60 %: customer id, e-mail, a phone for half of them, name,
opt-in), ``app_users`` (everyone: e-mail typed in mixed case, device, name, opt-in;
0.1 % typed ``test@test.com``), ``events`` (anonymous id, device). 0.5 % of people
share the e-mail of the person before them. About 5.4 identifier edges per person.

Each run, in a fresh state folder and a fresh copy of the warehouse, each build in its
own process (wall time and peak RSS of the process; the phases from ``--json``):

* ``first build``: ``conn profiles build`` from nothing;
* ``incremental (1 % new rows)``: new events of existing people and new people added
  to the warehouse, then ``conn profiles build`` again;
* ``full rebuild``: ``conn profiles build --full`` of the same data.

    .venv/bin/python bench/profiles_command.py               # 2M people
    .venv/bin/python bench/profiles_command.py --quick       # 20k people, 1 run
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROJECT = """\
version: 1
sources:
  warehouse: {type: duckdb, config: {path: warehouse.duckdb}}
destinations: {}
profiles:
  people:
    identifiers:
      customer_id: {limit: 1}
      email: {limit: 3}
      phone: {country_code: "44"}
      device_id: {}
      anonymous_id: {}
    edges:
      crm:
        source: warehouse
        stream: contacts
        identifiers: {id: customer_id, email: email, phone: phone}
        updated_at: changed_at
      app:
        source: warehouse
        stream: app_users
        identifiers: {mail: email, device: device_id}
        updated_at: seen_at
      events:
        source: warehouse
        stream: events
        identifiers: {anon: anonymous_id, device: device_id}
    fields:
      name: {rule: source_priority, sources: [crm, app]}
      opt_in: {rule: most_recent}
syncs: {}
"""


def _people_sql(table: str, start: int, count: int, junk_every: int) -> str:
    """The rows of people ``start`` .. ``start + count`` for one table. ``h`` is a
    per-person hash deciding who is a CRM contact, has a phone, shares an e-mail."""
    base = (f"SELECT i, hash(i) % 1000 AS h, CASE WHEN hash(i + 7) % 1000 < 5 AND i > "
            f"{start} THEN i - 1 ELSE i END AS mail FROM range({start}, {start + count}) t(i)")
    t0 = "TIMESTAMP '2026-01-01' + INTERVAL (i % 86400) SECOND"
    if table == "contacts":
        return (f"SELECT 'c' || i AS id, 'u' || mail || '@example.com' AS email, "
                f"CASE WHEN h % 2 = 0 THEN '07' || (700000000 + i % 99999999)::VARCHAR END "
                f"AS phone, 'Name ' || i AS name, h % 3 > 0 AS opt_in, {t0} AS changed_at "
                f"FROM ({base}) WHERE h < 600")
    if table == "app_users":
        return (f"SELECT CASE WHEN i % {junk_every} = 0 THEN 'test@test.com' ELSE "
                f"'U' || mail || '@Example.com' END AS mail, 'd' || i AS device, "
                f"'app ' || i AS name, h % 2 = 0 AS opt_in, {t0} AS seen_at FROM ({base})")
    return f"SELECT 'a' || i AS anon, 'd' || i AS device FROM ({base})"


def make_warehouse(path: Path, people: int) -> None:
    """The warehouse of ``people`` people, and ``more_*`` tables: 1 % new edges (half
    new events of existing people, half new people)."""
    import duckdb

    con = duckdb.connect(str(path))
    junk_every = max(2, min(1000, people // 150))  # 0.1 %, at least 150 app users
    for t in ("contacts", "app_users", "events"):
        con.execute(f"CREATE TABLE {t} AS {_people_sql(t, 0, people, junk_every)}")
    n = max(2, int(people * 5.4 * 0.01 / 4))
    con.execute(f"CREATE TABLE more_events AS SELECT 'n' || k AS anon, 'd' || "
                f"(hash(k) % {people}) AS device FROM range({n}) t(k)")
    new = n // 2
    for t in ("contacts", "app_users", "events"):
        con.execute(f"CREATE TABLE more_{t}_people AS "
                    f"{_people_sql(t, 2 * people, new, 10**9)}")
    con.close()


def add_more(path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("INSERT INTO events SELECT * FROM more_events")
    for t in ("contacts", "app_users", "events"):
        con.execute(f"INSERT INTO {t} SELECT * FROM more_{t}_people")
    con.close()


def build(project: Path, *flags: str) -> dict:
    from bench.common import run_child

    wall, peak, out = run_child([sys.executable, "-m", "conn.cli.main", "profiles", "build",
                                 "--json", *flags], cwd=project)
    (result,) = json.loads(out)["builds"]
    return {"wall": wall, "peak_mb": peak, **result}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20k people, 1 run")
    ap.add_argument("--json", type=Path, help="also write the result dict here")
    args = ap.parse_args()
    if args.quick:
        args.people, args.runs = 20_000, 1
    from bench.common import print_table

    builds: dict[str, list[dict]] = {"first build": [], "incremental (1 % new rows)": [],
                                     "full rebuild": []}
    with tempfile.TemporaryDirectory(prefix="conn-bench-profiles-command-") as tmp:
        base = Path(tmp) / "base.duckdb"
        make_warehouse(base, args.people)
        project = Path(tmp) / "project"
        for _ in range(args.runs):
            shutil.rmtree(project, ignore_errors=True)
            project.mkdir()
            (project / "conn.yml").write_text(PROJECT)
            shutil.copy(base, project / "warehouse.duckdb")
            builds["first build"].append(build(project))
            add_more(project / "warehouse.duckdb")
            builds["incremental (1 % new rows)"].append(build(project))
            builds["full rebuild"].append(build(project, "--full"))
    phases = ("read", "stitch", "golden", "save")
    results: dict = {"people": args.people, "builds": {}}
    rows = []
    first = statistics.median(b["wall"] for b in builds["first build"])
    for label, runs in builds.items():
        med = {k: statistics.median(b["seconds"][k] for b in runs) for k in phases}
        wall = statistics.median(b["wall"] for b in runs)
        peak = statistics.median(b["peak_mb"] for b in runs)
        last = runs[-1]
        results["builds"][label] = {"median_s": wall, "peak_mb": peak, "phases": med,
                                    "runs": [b["wall"] for b in runs],
                                    "records": last["records"], "entries": last["entries"],
                                    "profiles": last["profiles"],
                                    "restitched": last["restitched"]}
        rows.append([label, wall, peak, *(med[k] for k in phases), wall / first])
    entries = results["builds"]["first build"]["entries"]
    print_table(f"conn profiles build: {entries:,} identifier edges of {args.people:,} people "
                f"(medians of {args.runs})", rows,
                ["build", "seconds", "peak MB", *phases, "x first build"])
    for label, b in results["builds"].items():
        print(f"{label}: {b['records']:,} records, {b['profiles']:,} profiles, "
              f"{b['restitched']:,} re-stitched")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

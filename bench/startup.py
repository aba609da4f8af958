"""Scenario 5: start-up time of ``conn --help`` and of a one-row ``conn sync``, with every
first-party plugin installed in the environment. Goal: ``conn --help`` under 0.3 s.

    python bench/startup.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, measure, print_table

PROJECT = """\
version: 1
sources:
  src: {type: files, config: {path: one.jsonl, primary_key: [id]}}
destinations:
  out: {type: files, config: {path: out, format: jsonl}}
syncs:
  one:
    source: src
    stream: one
    destination: out
    object: records
    primary_key: id
    match_key: id
    mapping: {id: id, name: name}
"""


def conn_bin() -> str:
    exe = Path(sys.executable).parent / "conn"
    return str(exe) if exe.exists() else (shutil.which("conn") or "conn")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="conn start-up time")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    runs = 5 if args.quick else 15
    conn = conn_bin()
    results = [measure("conn --help", 0, [conn, "--help"], runs=runs, warmup=2)]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "conn.yml").write_text(PROJECT)
        (d / "one.jsonl").write_text('{"id": "1", "name": "Ann"}\n')
        # --full-resync: every run sends its one row, so each run does the whole path.
        results.append(measure("conn sync (1 row)", 1, [conn, "sync", "src", "out",
                                                        "--full-resync"],
                               runs=runs, warmup=1, cwd=d))
    rows = [[m.name, m.median_s, min(m.seconds), m.peak_mb] for m in results]
    print_table(f"start-up (median of {runs} runs)", rows,
                ["command", "median s", "best s", "peak MB"])
    goal = results[0].median_s < 0.3
    print(f"\nconn --help median {results[0].median_s:.3f} s: goal < 0.3 s "
          f"{'met' if goal else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"scenario": "startup", "env": environment(),
                                         "results": [m.as_dict() for m in results],
                                         "goals": {"help_under_0.3s": goal}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Singer bridge throughput: N rows from a Singer tap into conn's ``singer`` source (all
batches read) versus the same tap piped into a singer-sdk target (target-csv).

    .venv/bin/python bench/singer_bridge.py            # 1,000,000 rows, 3 runs each
    .venv/bin/python bench/singer_bridge.py --quick    # 100,000 rows, 1 run
    .venv/bin/python bench/singer_bridge.py --json out.json   # also write the figures

Scenarios: ``tap -> conn singer source`` (all batches read) vs ``tap | target-csv``
(singer-sdk), and ``tap | conn singer target`` (files destination, through the consent
gate, mapper, planner and state) vs the same ``tap | target-csv``.

The tap is a minimal fast tap script (stdlib only, pre-rendered RECORD lines from a
generated JSONL file) so the tap itself is not the bottleneck. Needs the singer source
plugin installed in this Python and ``.venvs/singer-connectors/meltanolabs-target-csv``
(the plugin's tests create it). Also reports the two RECORD→Arrow conversion strategies
(``pyarrow.json`` bulk vs orjson + ``from_pylist``) on the same lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAP = '''
import sys, json
if "--discover" in sys.argv:
    print(json.dumps({"streams": [{"tap_stream_id": "events", "stream": "events",
        "key_properties": ["id"], "schema": SCHEMA}]}))
    sys.exit(0)
out = sys.stdout.buffer
out.write(json.dumps({"type": "SCHEMA", "stream": "events", "schema": SCHEMA,
                      "key_properties": ["id"]}).encode() + b"\\n")
n = 0
with open(DATA, "rb") as fh:
    for line in fh:
        out.write(b'{"type":"RECORD","stream":"events","record":' + line.rstrip(b"\\n") + b"}\\n")
        n += 1
        if n % 10000 == 0:
            out.write(b'{"type":"STATE","value":{"n":' + str(n).encode() + b"}}\\n")
out.write(b'{"type":"STATE","value":{"n":' + str(n).encode() + b"}}\\n")
'''
SCHEMA = {"type": "object", "properties": {
    "id": {"type": "integer"}, "email": {"type": ["string", "null"]},
    "score": {"type": ["number", "null"]},
    "ts": {"type": ["string", "null"], "format": "date-time"},
    "country": {"type": ["string", "null"]}, "active": {"type": ["boolean", "null"]},
    "profile": {"type": ["object", "null"], "properties": {
        "age": {"type": ["integer", "null"]}, "plan": {"type": ["string", "null"]}}},
}}


def make_data(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({
                "id": i, "email": f"user{i}@example.org", "score": i * 0.25,
                "ts": f"2024-03-{1 + i % 28:02d}T12:{i % 60:02d}:00Z",
                "country": ["DE", "FR", "US"][i % 3], "active": i % 2 == 0,
                "profile": {"age": 18 + i % 60, "plan": "pro"}}) + "\n")


def run_conn(tap: list[str]) -> tuple[float, int]:
    from conn_source_singer.source import SingerSource

    src = SingerSource({"command": tap})
    info = src.stream("events")
    t0 = time.perf_counter()
    rows = 0
    for item in src.read(info, None, 65536):
        rows += getattr(item, "num_rows", 0)
    return time.perf_counter() - t0, rows


def run_sdk_target(tap: list[str], target: Path, out: Path) -> float:
    cfg = out / "target.json"
    cfg.write_text(json.dumps({"output_path": str(out)}))
    t0 = time.perf_counter()
    p1 = subprocess.Popen([*tap, "--config", "/dev/null"], stdout=subprocess.PIPE)
    p2 = subprocess.run([str(target), "--config", str(cfg)], stdin=p1.stdout,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    p1.wait()
    assert p2.returncode == 0
    return time.perf_counter() - t0


def run_conn_target(tap: list[str], out: Path) -> float:
    cfg = out / "files.json"
    cfg.write_text(json.dumps({"path": str(out / "conn-out"), "fsync": False,
                               "objects": {"events": {}}}))
    state = out / "conn-state"
    import shutil

    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(out / "conn-out", ignore_errors=True)
    conn = [sys.executable, "-m", "conn.cli.main", "singer", "target", "--type", "files",
            "--config", str(cfg), "--state-dir", str(state)]
    t0 = time.perf_counter()
    p1 = subprocess.Popen([*tap, "--config", "/dev/null"], stdout=subprocess.PIPE)
    p2 = subprocess.run(conn, stdin=p1.stdout, stdout=subprocess.DEVNULL, check=True,
                        cwd=out)
    p1.wait()
    assert p2.returncode == 0
    return time.perf_counter() - t0


def conversion(lines: list[bytes]) -> dict[str, float]:
    import orjson
    import pyarrow as pa
    from conn.singer import protocol as sp

    conv = sp.RecordConverter(SCHEMA)
    t0 = time.perf_counter()
    conv.from_lines(lines)
    bulk = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = [orjson.loads(x)["record"] for x in lines]
    conv.from_rows(rows)
    py = time.perf_counter() - t0
    assert isinstance(pa, object)
    return {"pyarrow.json": len(lines) / bulk, "orjson+from_pylist": len(lines) / py}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 rows, 1 run")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = ap.parse_args()
    n = args.rows or (100_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 3)
    target = ROOT / ".venvs" / "singer-connectors" / "meltanolabs-target-csv" / "bin" / "target-csv"
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        data = tmpd / "data.jsonl"
        make_data(data, n)
        script = tmpd / "tap_fast.py"
        script.write_text(f"SCHEMA = {SCHEMA!r}\nDATA = {str(data)!r}\n" + TAP)
        tap = [sys.executable, str(script)]
        conn_times, sdk_times, target_times = [], [], []
        for _ in range(runs):
            secs, rows = run_conn(tap)
            assert rows == n, rows
            conn_times.append(secs)
            target_times.append(run_conn_target(tap, tmpd))
            if target.exists():
                sdk_times.append(run_sdk_target(tap, target, tmpd))
        t0 = time.perf_counter()
        subprocess.run([*tap, "--config", "/dev/null"], stdout=subprocess.DEVNULL, check=True)
        tap_only = time.perf_counter() - t0
        sample = [b'{"type":"RECORD","stream":"events","record":' + x.rstrip() + b"}"
                  for x in data.read_bytes().splitlines()[:min(n, 200_000)]]
        conv = conversion(sample)
    med = statistics.median
    sdk = n / med(sdk_times) if sdk_times else None
    scenarios = [
        {"scenario": "tap -> conn singer source", "rows": n, "conn_rows_per_s":
         round(n / med(conn_times)), "sdk_rows_per_s": round(sdk) if sdk else None,
         "ratio": round(n / med(conn_times) / sdk, 2) if sdk else None},
        {"scenario": "tap | conn singer target (files)", "rows": n, "conn_rows_per_s":
         round(n / med(target_times)), "sdk_rows_per_s": round(sdk) if sdk else None,
         "ratio": round(n / med(target_times) / sdk, 2) if sdk else None},
    ]
    print(f"rows: {n:,}  runs: {runs}")
    print(f"tap alone (to /dev/null):        {n / tap_only:>12,.0f} rows/s")
    print(f"tap -> conn singer source:       {n / med(conn_times):>12,.0f} rows/s "
          f"(median {med(conn_times):.2f} s)")
    print(f"tap | conn singer target files:  {n / med(target_times):>12,.0f} rows/s "
          f"(median {med(target_times):.2f} s)")
    if sdk_times:
        print(f"tap | target-csv (singer-sdk):   {sdk:>12,.0f} rows/s "
              f"(median {med(sdk_times):.2f} s)")
    else:
        print("tap | target-csv: skipped (run the destination plugin tests to build its venv)")
    for k, v in conv.items():
        print(f"RECORD->Arrow via {k:<20} {v:>12,.0f} rows/s")
    if args.json:
        result = {"benchmark": "singer_bridge", "rows": n, "runs": runs,
                  "tap_alone_rows_per_s": round(n / tap_only), "scenarios": scenarios,
                  "record_to_arrow_rows_per_s": {k: round(v) for k, v in conv.items()}}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""PostgreSQL commit → webhook receiver: latency and sustained rate of ``conn sync --follow``
against a bare psycopg2 replication loop, measured in the same run.

For each side (``conn``: ``conn sync app hook --follow`` into the webhook destination;
``bare``: psycopg2's ``LogicalReplicationConnection`` with ``pgoutput``, a minimal decode of
Insert messages, a JSON POST of every 100 rows or 50 ms with httpx, then
``send_feedback(flush_lsn)``), each in its own process, on its own table, slot and
publication:

- at each of ``--rates`` events/s for ``--seconds``: a generator (several connections,
  each committing a group of rows whose size follows the target rate, about every 5 ms)
  notes when each group's commit returned; the receiver (a minimal asyncio HTTP server in
  its own process, answering 200 at once) notes when each record arrived. Latency =
  arrival - commit; p50, p95, p99 and the maximum are printed;
- ``--flood`` (``--max-rate``): the generator inserts as fast as it can (up to
  ``--flood-rate``, default 150,000/s) for ``--flood-seconds``; the rate delivered to the
  receiver over the window (after its first sixth) is the highest sustained rate of that
  side. The backlog left at the end is not waited for (``undelivered`` counts it). A side
  that delivered nearly all the generator committed was held by the generator, not by
  itself: the ratio then says so, since it is only a bound (raise ``--flood-rate``).

Each side's CPU per delivered event over the same window (``cpu µs/event``: user + system
time of its process from ``/proc``, sampled every 0.2 s) is printed with it: the figure
least moved by other jobs on a shared machine.

Prints conn's sustained rate as a ratio of the bare loop's and the issue's goals as met or
not met (never asserting), and saves everything to ``bench/results/``. Slots, publications
and tables are dropped at the end, also on Ctrl-C.

    .venv/bin/python bench/pg_stream.py --rates 1000,5000 --seconds 60 --flood \
        --flood-seconds 30
    .venv/bin/python bench/pg_stream.py --quick          # a few seconds at 200 events/s

Needs the local PostgreSQL with ``wal_level = logical`` (scripts/ensure-services.sh);
``--quick`` skips without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, print_table, save

URL = "postgresql://postgres@127.0.0.1:5432/test"
TICK_S = 0.005  # a generator connection commits at most every 5 ms (rows due since then)
FLOOD_CHUNK = 1000  # rows per transaction in flood mode


# --------------------------------------------------------------------------- receiver


def _receiver_main(port_q: Any, out_path: str, count: Any) -> None:
    """A minimal HTTP/1.1 keep-alive server: notes the first arrival time of every record
    id of each POST's ``records`` and answers 200 ``{}``; ``count`` holds the number of
    distinct ids seen, the arrivals are written to ``out_path`` at exit (SIGTERM)."""
    arrived: dict[int, float] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                now = time.time()
                for r in json.loads(body).get("records", []):
                    arrived.setdefault(int(r["id"]), now)
                count.value = len(arrived)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_q.put(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    asyncio.run(serve())
    Path(out_path).write_text(json.dumps(arrived))


class Receiver:
    """The receiver process; :meth:`stop` returns {record id: first arrival time}."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        self.count = ctx.Value("q", 0, lock=False)
        fd, self._out = tempfile.mkstemp(prefix="conn-pg-stream-arrivals-", suffix=".json")
        os.close(fd)
        self.proc = ctx.Process(target=_receiver_main, args=(q, self._out, self.count), daemon=True)
        self.proc.start()
        self.url = f"http://127.0.0.1:{q.get(timeout=30)}/hook"

    def stop(self) -> dict[int, float]:
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.join(60)
        try:
            return {int(k): v for k, v in json.loads(Path(self._out).read_text()).items()}
        except (FileNotFoundError, ValueError):  # the receiver died before writing
            return {}
        finally:
            Path(self._out).unlink(missing_ok=True)


# --------------------------------------------------------------------------- bare loop


def bare_loop(url: str, slot: str, hook: str) -> None:
    """The floor: pgoutput through psycopg2, Insert messages decoded into rows, a POST of
    every 100 rows or 50 ms, the slot's flush position confirmed after each POST."""
    import httpx
    import psycopg2
    import psycopg2.extras

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    conn = psycopg2.connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.create_replication_slot(slot, output_plugin="pgoutput")
    cur.start_replication(slot_name=slot, decode=False,
                          options={"proto_version": "1", "publication_names": slot})
    client = httpx.Client(timeout=30)
    columns: dict[int, list[str]] = {}
    rows: list[dict[str, Any]] = []
    first = 0.0
    last_lsn = 0
    while not stop.is_set():
        msg = cur.read_message()
        if msg is not None:
            data = msg.payload
            kind = data[:1]
            if kind == b"R":  # Relation: id, namespace, name, replica identity, columns
                rel = struct.unpack_from(">I", data, 1)[0]
                pos = data.index(b"\0", 5) + 1
                pos = data.index(b"\0", pos) + 2
                ncols = struct.unpack_from(">H", data, pos)[0]
                pos += 2
                names = []
                for _ in range(ncols):
                    end = data.index(b"\0", pos + 1)
                    names.append(data[pos + 1:end].decode())
                    pos = end + 9  # name's NUL, type oid, type modifier
                columns[rel] = names
            elif kind == b"I":  # Insert: relation id, 'N', tuple data
                rel = struct.unpack_from(">I", data, 1)[0]
                ncols = struct.unpack_from(">H", data, 6)[0]
                pos, row = 8, {}
                for name in columns[rel][:ncols]:
                    tag = data[pos:pos + 1]
                    pos += 1
                    if tag == b"t":
                        n = struct.unpack_from(">I", data, pos)[0]
                        row[name] = data[pos + 4:pos + 4 + n].decode()
                        pos += 4 + n
                    else:
                        row[name] = None
                row["id"] = int(row["id"])
                if not rows:
                    first = time.monotonic()
                rows.append(row)
            last_lsn = msg.data_start
        if rows and (len(rows) >= 100 or time.monotonic() - first >= 0.05):
            client.post(hook, json={"records": rows}).raise_for_status()
            rows = []
            cur.send_feedback(flush_lsn=last_lsn)
        if msg is None:
            timeout = 0.05 if not rows else max(0.0, 0.05 - (time.monotonic() - first))
            select.select([cur], [], [], timeout)
    client.close()
    conn.close()


# --------------------------------------------------------------------------- generator


class Generator:
    """Inserts rows ``0..`` into ``table`` at ``rate`` per second (``math.inf``: as fast as
    it can) for ``seconds`` through ``connections`` connections. Each connection takes the
    rows due since the last take (at most every 5 ms) and commits them in one transaction;
    ``groups`` holds (first id, last id, time the commit returned)."""

    def __init__(self, table: str, rate: float, seconds: float, connections: int) -> None:
        self.table, self.rate, self.seconds = table, rate, seconds
        self.connections = connections
        self.groups: list[tuple[int, int, float]] = []
        self.next_id = 0
        self.lock = threading.Lock()
        self.start = self.end = 0.0
        self.stopped = threading.Event()  # Ctrl-C: the workers end before cleanup

    def _take(self) -> tuple[int, int] | None:
        while True:
            now = time.monotonic()
            if now >= self.start + self.seconds or self.stopped.is_set():
                return None
            with self.lock:
                if math.isinf(self.rate):
                    due = self.next_id + FLOOD_CHUNK
                else:
                    due = int((now - self.start) * self.rate)
                if due > self.next_id:
                    lo, self.next_id = self.next_id, due
                    return lo, due - 1
            time.sleep(TICK_S)

    def _worker(self) -> None:
        import psycopg2

        db = psycopg2.connect(URL)
        cur = db.cursor()
        sql = (f'INSERT INTO "{self.table}" (id, customer_id, event) '
               "SELECT g, g %% 97, 'feature_failed' FROM generate_series(%s, %s) g")
        while (taken := self._take()) is not None:
            cur.execute(sql, taken)
            db.commit()
            t = time.time()
            with self.lock:
                self.groups.append((*taken, t))
        db.close()

    def run(self) -> None:
        self.start = time.monotonic()
        self.wall_start = time.time()
        threads = [threading.Thread(target=self._worker) for _ in range(self.connections)]
        for th in threads:
            th.start()
        try:
            for th in threads:
                th.join()
        finally:
            self.stopped.set()
            for th in threads:
                th.join()
        self.end = time.time()

    @property
    def committed(self) -> int:
        return sum(hi - lo + 1 for lo, hi, _ in self.groups)


# --------------------------------------------------------------------------- one run


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class CpuSampler:
    """Samples a process's CPU time (user + system, ``/proc/PID/stat``) every 0.2 s, so
    that the CPU it spent over the flood's window can be divided by the events it
    delivered in it (conn's lever on this 2-core machine, where a flood leaves no idle
    CPU). Without ``/proc`` it samples nothing and the figure is left out."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                fields = self.path.read_text().rpartition(")")[2].split()
            except OSError:
                return
            # utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
            self.samples.append((time.time(), (int(fields[11]) + int(fields[12])) / self.tick))

    def stop(self) -> None:
        """Stop sampling."""
        self.stopped.set()
        self.thread.join()

    def between(self, start: float, end: float) -> float | None:
        """CPU seconds spent from ``start`` to ``end`` (wall clock; interpolated)."""
        import numpy as np

        if len(self.samples) < 2 or self.samples[0][0] > start or self.samples[-1][0] < end:
            return None
        t, c = np.array(self.samples).T
        return float(np.interp(end, t, c) - np.interp(start, t, c))


def _wait_streaming(cur: Any, slot: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while True:
        # Streaming once a replication connection holds the slot (while the slot is
        # created, the creating session holds it: changes then precede its start).
        cur.execute("SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r "
                    "ON r.pid = s.active_pid WHERE s.slot_name = %s", (slot,))
        if cur.fetchall() == [(1,)]:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"the follower did not start: {err[-2000:]}")
        time.sleep(0.1)


def _start_side(side: str, table: str, slot: str, hook: str, folder: Path,
                args: argparse.Namespace) -> subprocess.Popen:
    if side == "bare":
        return subprocess.Popen([sys.executable, __file__, "--bare-loop", slot, hook],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sync: dict[str, Any] = {"source": "app", "stream": table, "destination": "hook",
                            "object": "events", "match_key": "id", "mode": args.mode,
                            # Every column, as the bare loop posts every column.
                            "mapping": {"id": "id", "customer_id": "customer_id",
                                        "event": "event", "created_at": "created_at"}}
    if args.max_latency_ms:
        sync["max_latency_ms"] = args.max_latency_ms
    hook_config: dict[str, Any] = {"url": hook}
    if args.batch_size:
        hook_config["batch_size"] = args.batch_size
    if args.concurrency:
        hook_config["concurrency"] = args.concurrency
    project = {"version": 1,
               "sources": {"app": {"type": "postgres", "config": {
                   "url": URL, "tables": [table], "replication": {"slot": slot}}}},
               "destinations": {"hook": {"type": "webhook", "config": hook_config}},
               "syncs": {"feature_failed_to_hook": sync}}
    (folder / "conn.yml").write_text(json.dumps(project))
    conn_bin = str(Path(sys.executable).with_name("conn"))
    return subprocess.Popen([conn_bin, "sync", "app", "hook", "--follow", "-p", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_once(side: str, rate: float, seconds: float, args: argparse.Namespace,
             cleanup: list[tuple[str, str]]) -> dict[str, Any]:
    """One measured run of one side; returns its figures."""
    import psycopg2

    tag = uuid.uuid4().hex[:8]
    table, slot = f"feature_failed_{tag}", f"bench_{tag}"
    cleanup.append((table, slot))
    db = psycopg2.connect(URL)
    db.autocommit = True
    cur = db.cursor()
    cur.execute(f'CREATE TABLE "{table}" (id bigint PRIMARY KEY, customer_id int, '
                "event text, created_at timestamptz DEFAULT now())")
    if side == "bare":
        cur.execute(f'CREATE PUBLICATION "{slot}" FOR TABLE "{table}"')
    receiver = Receiver()
    folder = Path(tempfile.mkdtemp(prefix="conn-pg-stream-"))
    proc = _start_side(side, table, slot, receiver.url, folder, args)
    flood = math.isinf(rate)
    # A flood is capped at --flood-rate (0: none): beyond what either side can take, more
    # inserts only take CPU from the measured side on this 2-core machine.
    gen = Generator(table, args.flood_rate if flood and args.flood_rate else rate, seconds,
                    args.connections)
    err = b""
    cpu = CpuSampler(proc.pid)
    try:
        _wait_streaming(cur, slot, proc)
        gen.run()
        total = gen.committed
        # Wait for the rest (a flood's backlog is not waited for: its figure is the rate
        # delivered during the window).
        wait_end = time.monotonic() + (2 if flood else args.drain_seconds)
        while time.monotonic() < wait_end and proc.poll() is None:
            time.sleep(0.2)
            if not flood and receiver.count.value >= total:
                break
    finally:
        cpu.stop()
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        arrived = receiver.stop()
        db.close()
    return _figures(side, rate, seconds, gen, arrived, alive, err.decode(errors="replace"),
                    cpu)


def _figures(side: str, rate: float, seconds: float, gen: Generator,
             arrived: dict[int, float], alive: bool, err: str,
             cpu: CpuSampler | None = None) -> dict[str, Any]:
    import numpy as np

    total = gen.committed
    commit = np.full(total, np.nan)
    for lo, hi, t in gen.groups:
        commit[lo:hi + 1] = t
    arrival = np.full(total, np.nan)
    if arrived:
        ids = np.fromiter(arrived.keys(), dtype=np.int64, count=len(arrived))
        ts = np.fromiter(arrived.values(), dtype=np.float64, count=len(arrived))
        keep = ids < total
        arrival[ids[keep]] = ts[keep]
    got = ~np.isnan(arrival)
    lat = (arrival[got] - commit[got]).tolist()
    span = gen.end - gen.wall_start
    window_start = gen.wall_start + seconds / 6
    in_window = int(np.count_nonzero((arrival >= window_start) & (arrival <= gen.end)))
    delivered_window = in_window / (gen.end - window_start) if gen.end > window_start else 0.0
    out = {"side": side, "rate": "flood" if math.isinf(rate) else rate, "seconds": seconds,
           "committed": total, "committed_per_s": total / span if span else 0.0,
           "delivered": int(got.sum()), "delivered_per_s_window": delivered_window,
           "undelivered": int(total - got.sum()),
           "p50": percentile(lat, 50), "p95": percentile(lat, 95),
           "p99": percentile(lat, 99), "max": max(lat) if lat else float("nan"),
           "follower_exited": not alive}
    # The side's CPU per event delivered over the same window (µs).
    spent = cpu.between(window_start, gen.end) if cpu is not None else None
    out["cpu_us_per_event"] = spent / in_window * 1e6 if spent is not None and in_window \
        else float("nan")
    if not alive or (not math.isinf(rate) and out["undelivered"]):
        out["stderr_tail"] = err[-1500:]
    return out


def _drop(cleanup: list[tuple[str, str]]) -> None:
    """Drop every table, slot and publication this run created (after their consumers
    released the slots)."""
    import psycopg2

    db = psycopg2.connect(URL)
    db.autocommit = True
    cur = db.cursor()
    for table, slot in cleanup:
        for _ in range(100):
            cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                        (slot,))
            if cur.fetchall() != [(True,)]:
                break
            time.sleep(0.1)
        cur.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND active", (slot,))
        time.sleep(0.2)
        cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s", (slot,))
        cur.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
        cur.execute(f'DROP TABLE IF EXISTS "{table}"')
    db.close()


def _check_server() -> None:
    import psycopg2

    db = psycopg2.connect(URL, connect_timeout=3)
    cur = db.cursor()
    cur.execute("SHOW wal_level")
    level = cur.fetchone()[0]
    db.close()
    if level != "logical":
        raise RuntimeError(f"wal_level is {level}, not logical (scripts/ensure-services.sh)")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-loop":
        bare_loop(URL, sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="1000,5000", help="events/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds at each rate")
    ap.add_argument("--flood", "--max-rate", action="store_true",
                    help="also insert as fast as possible: the highest sustained rate")
    ap.add_argument("--flood-seconds", type=float, default=None,
                    help="seconds of the flood (default: --seconds)")
    ap.add_argument("--flood-rate", type=float, default=150000.0,
                    help="the flood's ceiling in events/s (0: as fast as possible)")
    ap.add_argument("--sides", default="conn,bare", help="conn, bare or both")
    ap.add_argument("--connections", type=int, default=4, help="generator connections")
    ap.add_argument("--drain-seconds", type=float, default=60.0,
                    help="at most this long after the generator for the rest to arrive")
    ap.add_argument("--max-latency-ms", type=int, default=None,
                    help="conn's sync max_latency_ms (default: conn's default)")
    ap.add_argument("--mode", default="upsert", choices=("upsert", "append"),
                    help="the conn sync's mode (upsert, the walkthrough's, by default)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="the webhook's concurrent requests (default: the webhook's)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="the webhook's batch_size, records per request (default: its 100)")
    ap.add_argument("--quick", action="store_true",
                    help="3 s at 200 events/s and a 3 s flood; skipped without PostgreSQL")
    ap.add_argument("--json", help="also write the result dict to this file")
    args = ap.parse_args()
    if args.quick:
        args.rates, args.seconds, args.flood, args.drain_seconds = "200", 3.0, True, 10.0
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    flood_s = args.flood_seconds or args.seconds
    sides = [s.strip() for s in args.sides.split(",")]
    try:
        _check_server()
    except Exception as exc:
        if not args.quick:
            raise
        print(f"skipped: {exc}")
        if args.json:
            Path(args.json).write_text(json.dumps({"scenario": "pg_stream",
                                                   "skipped": str(exc)[:200]}))
        return 0

    cleanup: list[tuple[str, str]] = []
    results: list[dict[str, Any]] = []
    interrupted = False
    try:
        for rate in rates + ([math.inf] if args.flood else []):
            for side in sides:
                secs = flood_s if math.isinf(rate) else args.seconds
                print(f"# {side} at {'flood' if math.isinf(rate) else int(rate)} "
                      f"for {secs:g} s", flush=True)
                r = run_once(side, rate, secs, args, cleanup)
                results.append(r)
                if "stderr_tail" in r:
                    print(f"  its stderr: {r['stderr_tail'][-600:]}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        interrupted = True
    finally:
        _drop(cleanup)

    rows = [[r["side"], r["rate"], round(r["committed_per_s"]), r["delivered"],
             r["undelivered"], round(r["delivered_per_s_window"]), round(r["p50"], 3),
             round(r["p95"], 3), round(r["p99"], 3), round(r["max"], 3),
             round(r.get("cpu_us_per_event", float("nan")), 1)] for r in results]
    if rows:
        print_table("PostgreSQL commit -> webhook receiver (latency in seconds)", rows,
                    ["side", "rate/s", "committed/s", "delivered", "undelivered",
                     "delivered/s", "p50", "p95", "p99", "max", "cpu µs/event"])
    goals = _goals(results)
    for text in goals["lines"]:
        print(text)
    payload = {"scenario": "pg_stream", "environment": environment(),
               "load": os.getloadavg(), "results": results, "goals": goals,
               "command": " ".join(sys.argv)}
    save("pg_stream", payload)
    if args.json:
        Path(args.json).write_text(json.dumps(payload, default=str))
    return 130 if interrupted else 0


def held_by_generator(r: dict[str, Any]) -> bool:
    """Whether a flood's side delivered nearly everything the generator committed (it
    would have taken more: its rate is the generator's, not its own ceiling)."""
    return r["undelivered"] <= 0.02 * r["committed"]


def _goals(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, met or not met (reported, never asserted)."""
    def pick(side: str, rate: Any) -> dict[str, Any] | None:
        return next((r for r in results if r["side"] == side and r["rate"] == rate), None)

    lines = []
    out: dict[str, Any] = {}
    r1 = pick("conn", 1000.0)
    if r1:
        out["p95_1000"] = ok = r1["p95"] <= 1.0 and not r1["undelivered"]
        lines.append(f"goal p95 <= 1 s at 1,000 events/s: p95 {r1['p95']:.3f} s, "
                     f"{r1['undelivered']} undelivered: {'met' if ok else 'not met'}")
    r5 = pick("conn", 5000.0)
    if r5:
        ok = (r5["p95"] <= 2.0 and not r5["undelivered"]
              and r5["committed_per_s"] >= 0.95 * 5000)
        out["p95_5000"] = ok
        lines.append(f"goal >= 5,000 events/s sustained with p95 <= 2 s: committed "
                     f"{r5['committed_per_s']:,.0f}/s, p95 {r5['p95']:.3f} s, "
                     f"{r5['undelivered']} undelivered: {'met' if ok else 'not met'}")
    fc, fb = pick("conn", "flood"), pick("bare", "flood")
    if fc and fb and fb["delivered_per_s_window"]:
        ratio = fc["delivered_per_s_window"] / fb["delivered_per_s_window"]
        out["ratio"] = ratio
        held = [r["side"] for r in (fc, fb) if held_by_generator(r)]
        out["held_by_generator"] = held
        note = (f"; {' and '.join(held)} kept up with the generator, so this is a bound: "
                "raise --flood-rate" if held else "")
        lines.append(f"highest sustained rate: conn {fc['delivered_per_s_window']:,.0f}/s, "
                     f"bare loop {fb['delivered_per_s_window']:,.0f}/s: ratio {ratio:.2f}x "
                     f"(goal >= 0.7x: {'met' if ratio >= 0.7 else 'not met'}){note}")
    out["lines"] = lines
    return out


if __name__ == "__main__":
    sys.exit(main())

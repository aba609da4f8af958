"""Messages per second followed from a message queue into the files destination.

For each queue source (``nats``, ``rabbitmq``, ``redis_streams``): publishes
``--messages`` JSON messages to a fresh stream / queue / key, then starts
``conn sync queue landing --follow`` on a project that follows it into the files
destination, and times (a) from the start of the process to the last row in the files
log, (b) from the first row to the last (the follow rate, start-up excluded). Then
publishes the same number again while the follower runs, timing publish start to the
last row (a live stream: publisher and follower share the machine). Prints and saves
(``bench/results/``) the figures; the streams, queues and keys are deleted at the end.

    .venv/bin/python bench/queue_follow.py --messages 10000
    .venv/bin/python bench/queue_follow.py --messages 10000 --only nats

Needs the local NATS (JetStream), RabbitMQ and Redis, and the three plugins installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, print_table, save

CONN = str(Path(sys.executable).with_name("conn"))
COLUMNS = {"id": "integer", "email": "string", "status": "string", "score": "number"}


def payloads(lo: int, hi: int) -> list[bytes]:
    return [json.dumps({"id": i, "email": f"p{i}@example.com", "status": "feature_failed",
                        "score": i * 0.5}).encode() for i in range(lo, hi)]


class Nats:
    name = "nats"

    def __init__(self) -> None:
        self.stream = "CONN_BENCH_" + uuid.uuid4().hex[:8].upper()
        self._js(lambda js: js.add_stream(name=self.stream, subjects=[f"{self.stream}.>"]))

    def _js(self, fn: Callable[[Any], Any]) -> Any:
        import nats

        async def go() -> Any:
            nc = await nats.connect("nats://127.0.0.1:4222")
            try:
                return await fn(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(go())

    def config(self) -> dict[str, Any]:
        return {"stream": self.stream, "durable": "bench", "name": "events"}

    def publish(self, msgs: list[bytes]) -> None:
        async def go(js: Any) -> None:
            for i in range(0, len(msgs), 1000):
                await asyncio.gather(*(js.publish(f"{self.stream}.e", m)
                                       for m in msgs[i:i + 1000]))

        self._js(go)

    def cleanup(self) -> None:
        self._js(lambda js: js.delete_stream(self.stream))


class Rabbit:
    name = "rabbitmq"

    def __init__(self) -> None:
        import pika

        self.queue = "conn_bench_" + uuid.uuid4().hex[:8]
        self.conn = pika.BlockingConnection(pika.URLParameters(
            "amqp://guest:guest@127.0.0.1:5672/%2F"))
        self.ch = self.conn.channel()
        self.ch.queue_declare(self.queue, durable=True)

    def config(self) -> dict[str, Any]:
        return {"queue": self.queue, "name": "events"}

    def publish(self, msgs: list[bytes]) -> None:
        for m in msgs:
            self.ch.basic_publish("", self.queue, m)
        self.conn.process_data_events(0)

    def cleanup(self) -> None:
        self.ch.queue_delete(self.queue)
        self.conn.close()


class Redis:
    name = "redis_streams"

    def __init__(self) -> None:
        import redis

        self.key = "conn:bench:" + uuid.uuid4().hex[:8]
        self.r = redis.Redis()

    def config(self) -> dict[str, Any]:
        return {"key": self.key, "group": "bench", "name": "events"}

    def publish(self, msgs: list[bytes]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for m in msgs:
            pipe.xadd(self.key, {"data": m})
        pipe.execute()

    def cleanup(self) -> None:
        self.r.delete(self.key)


def rows_in(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


def run(queue: Any, n: int, folder: Path) -> dict[str, Any]:
    doc = {"version": 1,
           "sources": {"queue": {"type": queue.name, "config": {
               **queue.config(), "columns": COLUMNS, "primary_key": "id"}}},
           "destinations": {"landing": {"type": "files", "config": {"path": str(folder / "out")}}},
           "syncs": {"q2f": {"source": "queue", "stream": "events", "destination": "landing",
                             "object": "records", "match_key": "id", "max_latency_ms": 200,
                             "mapping": {c: c for c in COLUMNS}}}}
    (folder / "conn.yml").write_text(yaml.safe_dump(doc))
    log = folder / "out" / "records.jsonl"
    queue.publish(payloads(0, n))
    t0 = time.monotonic()
    proc = subprocess.Popen([CONN, "sync", "queue", "landing", "--follow", "-p", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    try:
        while (got := rows_in(log)) < n:
            if got and first is None:
                first = time.monotonic()
            if proc.poll() is not None:
                raise SystemExit(f"{queue.name}: the follower exited: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.01)
        done = time.monotonic()
        first = first or done
        t1 = time.monotonic()
        queue.publish(payloads(n, 2 * n))
        while rows_in(log) < 2 * n:
            if proc.poll() is not None:
                raise SystemExit(f"{queue.name}: the follower exited")
            time.sleep(0.01)
        live = time.monotonic() - t1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"source": queue.name, "messages": n,
            "backlog_s_total": round(done - t0, 3),
            "backlog_msgs_per_s": round(n / max(done - first, 1e-9)),
            "live_s": round(live, 3), "live_msgs_per_s": round(n / live)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--only", nargs="*", choices=["nats", "rabbitmq", "redis_streams"])
    args = p.parse_args()
    kinds = {"nats": Nats, "rabbitmq": Rabbit, "redis_streams": Redis}
    results = []
    for name in args.only or list(kinds):
        queue = kinds[name]()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run(queue, args.messages, Path(tmp)))
        finally:
            queue.cleanup()
    cols = ["source", "messages", "backlog_s_total", "backlog_msgs_per_s", "live_s",
            "live_msgs_per_s"]
    print_table(f"queue → files, conn sync --follow ({os.cpu_count()} cpus)",
                [[r[c] for c in cols] for r in results], cols)
    print(save("queue_follow", {"env": environment(), "results": results}))


if __name__ == "__main__":
    main()

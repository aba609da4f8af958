"""Following a RabbitMQ queue with ``conn sync SRC DEST --follow`` into the files
destination (plugins/sources/rabbitmq/README.md "Guarantees", docs/realtime.md), against
the local RabbitMQ server: delivery, SIGKILL and restart without loss, acks only after
commit, malformed messages rejected and listed. Each test has its own queue and project
folder.

Here rather than in the rabbitmq plugin's tests because it needs two plugins (the rabbitmq source
and the files destination), which the core's environment has; the plugin's own tests
hold its conformance suite and check() messages. Tests skip (fail under CI) when the
server is not reachable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import unavailable

pytest.importorskip("conn_source_rabbitmq")
pytest.importorskip("conn_destination_files")

pytestmark = pytest.mark.services

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class Rabbit:
    """Synchronous helpers over pika (a connection per call: tests are not hot)."""

    def _conn(self) -> Any:
        import pika

        params = pika.URLParameters(URL)
        params.connection_attempts = 1
        params.socket_timeout = 3
        return pika.BlockingConnection(params)

    def declare(self, queue: str) -> None:
        with self._conn() as conn:
            conn.channel().queue_declare(queue, durable=True)

    def delete(self, queue: str) -> None:
        with self._conn() as conn:
            conn.channel().queue_delete(queue)

    def publish(self, queue: str, messages: Iterable[dict[str, Any] | bytes]) -> None:
        """Publish persistent messages to ``queue`` (publisher confirms on)."""
        import pika

        props = pika.BasicProperties(delivery_mode=2)
        with self._conn() as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            for m in messages:
                body = m if isinstance(m, bytes) else json.dumps(m).encode()
                ch.basic_publish("", queue, body, props)

    def ready(self, queue: str) -> int:
        """Messages ready for delivery (not delivered, or requeued)."""
        with self._conn() as conn:
            return int(conn.channel().queue_declare(queue, passive=True)
                       .method.message_count)

    def consumers(self, queue: str) -> int:
        with self._conn() as conn:
            return int(conn.channel().queue_declare(queue, passive=True)
                       .method.consumer_count)


def _reachable() -> str | None:
    try:
        Rabbit()._conn().close()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def rabbit() -> Rabbit:
    reason = _reachable()
    if reason is not None:
        unavailable(f"RabbitMQ at 127.0.0.1:5672 (guest/guest) is not reachable: {reason}")
    return Rabbit()


@pytest.fixture
def queue_name(rabbit: Rabbit) -> Iterator[str]:
    """A fresh durable queue, deleted after the test."""
    name = "conn_t_" + uuid.uuid4().hex[:10]
    rabbit.declare(name)
    yield name
    rabbit.delete(name)


CONN = str(Path(sys.executable).with_name("conn"))


def eventually(check: Callable[[], Any], timeout: float = 60.0, what: Any = "") -> Any:
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


def project(folder: Path, queue: str, *, max_latency_ms: int = 100) -> None:
    doc = {"version": 1,
           "sources": {"queue": {"type": "rabbitmq", "config": {
               "url": "amqp://guest:guest@127.0.0.1:5672/%2F", "queue": queue,
               "name": "events",
               "columns": {"id": "integer", "email": "string", "status": "string"},
               "primary_key": "id"}}},
           "destinations": {"landing": {"type": "files",
                                        "config": {"path": str(folder / "out")}}},
           "syncs": {"q2f": {"source": "queue", "stream": "events", "destination": "landing",
                             "object": "records", "match_key": "id",
                             "max_latency_ms": max_latency_ms,
                             "mapping": {"id": "id", "email": "email", "status": "status"}}}}
    (folder / "conn.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def start(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "CONN_PLUGINS_STRICT": "1"}
    return subprocess.Popen([CONN, "sync", "queue", "landing", "--follow", "-p", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def delivered(folder: Path) -> list[dict[str, Any]]:
    path = folder / "out" / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ids(folder: Path) -> set[int]:
    return {r["id"] for r in delivered(folder)}


def consuming(rabbit, queue: str, proc: subprocess.Popen) -> None:
    """Wait until the follower consumes from the queue."""
    def bound() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the follower exited: {proc.stderr.read().decode()}")
        return rabbit.consumers(queue) > 0

    eventually(bound, what="the follower's consumer")


def people(lo: int, hi: int, status: str = "new") -> list[dict[str, Any]]:
    return [{"id": i, "email": f"p{i}@example.com", "status": status} for i in range(lo, hi)]


def test_published_messages_reach_the_files_destination(tmp_path, rabbit, queue_name):
    project(tmp_path, queue_name)
    proc = start(tmp_path)
    try:
        consuming(rabbit, queue_name, proc)
        rabbit.publish(queue_name, people(0, 50))
        eventually(lambda: ids(tmp_path) == set(range(50)), what="50 rows in the files log")
        rabbit.publish(queue_name, people(3, 4, status="churned"))
        eventually(lambda: any(r["status"] == "churned" for r in delivered(tmp_path)),
                   what="the update")
    finally:
        code, err = stop(proc)
    assert code == 130, err  # stopped on request: "interrupted", as documented
    # Everything was acknowledged: nothing is requeued once the consumer is gone.
    assert rabbit.ready(queue_name) == 0


@pytest.mark.slow
def test_sigkill_and_restart_lose_nothing(tmp_path, rabbit, queue_name):
    """Messages keep coming while the follower is killed (SIGKILL) three times and
    restarted: every message published reaches the destination."""
    project(tmp_path, queue_name)
    proc = start(tmp_path)
    total = 0
    try:
        consuming(rabbit, queue_name, proc)
        for _ in range(3):
            rabbit.publish(queue_name, people(total, total + 200))
            total += 200
            eventually(lambda n=total: len(ids(tmp_path)) > n - 200, what="some rows")
            kill(proc)
            rabbit.publish(queue_name, people(total, total + 100))
            total += 100
            proc = start(tmp_path)
        eventually(lambda: ids(tmp_path) == set(range(total)), timeout=90,
                   what=lambda: f"{total - len(ids(tmp_path))} rows missing")
    finally:
        stop(proc)
    assert rabbit.ready(queue_name) == 0


@pytest.mark.slow
def test_a_message_is_acked_only_after_its_commit(tmp_path, rabbit, queue_name):
    """Killed after the messages were delivered to conn but before their micro-batch
    was committed (a long max_latency_ms holds it): RabbitMQ requeues them, and the
    restarted follower delivers them."""
    project(tmp_path, queue_name, max_latency_ms=4000)
    proc = start(tmp_path)
    try:
        consuming(rabbit, queue_name, proc)
        rabbit.publish(queue_name, people(0, 5))
        eventually(lambda: rabbit.ready(queue_name) == 0, what="5 messages delivered")
        kill(proc)
        assert ids(tmp_path) == set()
        eventually(lambda: rabbit.ready(queue_name) == 5, what="the 5 messages requeued")
        proc = start(tmp_path)
        eventually(lambda: ids(tmp_path) == set(range(5)), what="the 5 rows after restart")
    finally:
        stop(proc)
    assert rabbit.ready(queue_name) == 0


def test_a_malformed_message_is_rejected_listed_and_then_acked(tmp_path, rabbit, queue_name):
    import pika

    project(tmp_path, queue_name)
    proc = start(tmp_path)
    try:
        consuming(rabbit, queue_name, proc)
        rabbit.publish(queue_name, people(0, 2))
        with rabbit._conn() as conn:
            conn.channel().basic_publish("", queue_name, b'{"id": 7, "email": ',
                                         pika.BasicProperties(message_id="bad-1"))
        rabbit.publish(queue_name, people(2, 3))
        eventually(lambda: ids(tmp_path) == {0, 1, 2}, what="the 3 good rows")
    finally:
        stop(proc)
    assert rabbit.ready(queue_name) == 0  # acked, the malformed one included
    out = subprocess.run([CONN, "rejected", "q2f", "--json", "-p", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["rejected"]
    assert [str(r["key"]) for r in rows] == [f"{queue_name}#bad-1"]
    assert "not valid JSON" in rows[0]["reason"]

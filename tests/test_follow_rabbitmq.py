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
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import follow_kit as kit
from tests.conftest import unavailable
from tests.follow_kit import (
    CONN,
    delivered,
    eventually,
    ids,
    kill,
    people,
    queue_project,
    start,
    stop,
)

rabbit_testing = pytest.importorskip("conn_source_rabbitmq.testing")
pytest.importorskip("conn_destination_files")

pytestmark = pytest.mark.services

Rabbit, URL = rabbit_testing.Rabbit, rabbit_testing.URL
#: The local server and a queue of each test's own; a missing server fails under CI.
rabbit, queue_name = rabbit_testing.fixtures(unavailable)


def project(folder: Path, queue: str, **kw: Any) -> None:
    queue_project(folder, "rabbitmq", {"url": URL, "queue": queue}, **kw)


def consuming(rabbit: Rabbit, queue: str, proc: subprocess.Popen) -> None:
    kit.consuming(lambda: rabbit.consumers(queue) > 0, proc, "the follower's consumer")


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


@pytest.mark.slow
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


def close_connection(queue: str) -> None:
    """Close the follower's connection from the broker's side (rabbitmqctl; the
    connection is named after the queue, so no other test's is touched)."""
    out = subprocess.run(["rabbitmqctl", "list_connections", "-q", "--no-table-headers",
                          "pid", "client_properties"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    pids = [line.split("\t")[0] for line in out.splitlines() if f" {queue}" in line]
    assert pids, f"no connection of the follower of {queue} in: {out}"
    for pid in pids:
        subprocess.run(["rabbitmqctl", "close_connection", pid, "closed by a conn test"],
                       capture_output=True, timeout=60, check=True)


@pytest.mark.slow
def test_a_connection_closed_by_the_broker_is_reopened_and_loses_nothing(
        tmp_path, rabbit, queue_name, fault_server):
    """The broker closes the follower's connection twice while messages keep coming and
    requests are in flight to a slow webhook: the follower reconnects by itself (with
    backoff, one log line each way), every message arrives, and nothing was sent twice
    but the requests in flight, under their original idempotency keys."""
    project(tmp_path, queue_name, hook_url=fault_server.url + "/hook")
    _, changed = kit.follow_through_cuts(
        tmp_path, fault_server, lambda m: rabbit.publish(queue_name, m),
        lambda: rabbit.consumers(queue_name) > 0, lambda: close_connection(queue_name),
        secrets=["guest:guest"])
    assert not changed, f"re-sent under another idempotency key: {changed}"
    assert rabbit.ready(queue_name) == 0

"""Following a Redis stream with ``conn sync SRC DEST --follow`` into the files destination
(plugins/sources/redis_streams/README.md "Guarantees", docs/realtime.md), against the
local Redis server: delivery, SIGKILL and restart without loss, XACK only after commit,
malformed entries rejected and listed. Each test has its own stream key and project
folder.

Here rather than in the redis_streams plugin's tests because it needs two plugins (the
redis_streams source and the files destination), which the core's environment has; the
plugin's own tests hold its conformance suite and check() messages. Tests skip (fail
under CI) when the server is not reachable.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conn.testing.services import PrivateServer

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

redis_testing = pytest.importorskip("conn_source_redis_streams.testing")
pytest.importorskip("conn_destination_files")

pytestmark = pytest.mark.services

Streams, URL = redis_testing.Streams, redis_testing.URL
#: The local server and a stream key of each test's own; a missing server fails under CI.
streams, stream_key = redis_testing.fixtures(unavailable)
GROUP = "conn-follow"


def project(folder: Path, key: str, **kw: Any) -> None:
    queue_project(folder, "redis_streams", {"url": URL, "key": key, "group": GROUP,
                                            "consumer": key}, **kw)


def consuming(streams: Streams, key: str, proc: subprocess.Popen) -> None:
    kit.consuming(lambda: streams.group(key, GROUP)["consumers"] > 0, proc,
                  "the follower's consumer group")


def test_published_messages_reach_the_files_destination(tmp_path, streams, stream_key):
    project(tmp_path, stream_key)
    proc = start(tmp_path)
    try:
        consuming(streams, stream_key, proc)
        streams.add(stream_key, people(0, 50))
        eventually(lambda: ids(tmp_path) == set(range(50)), what="50 rows in the files log")
        streams.add(stream_key, people(3, 4, status="churned"))
        eventually(lambda: any(r["status"] == "churned" for r in delivered(tmp_path)),
                   what="the update")
        eventually(lambda: streams.group(stream_key, GROUP)["pending"] == 0,
                   what="every entry acked")
        assert streams.group(stream_key, GROUP)["lag"] == 0
    finally:
        code, err = stop(proc)
    assert code == 130, err  # stopped on request: "interrupted", as documented


@pytest.mark.slow
def test_sigkill_and_restart_lose_nothing(tmp_path, streams, stream_key):
    """Entries keep coming while the follower is killed (SIGKILL) three times and
    restarted: every entry added reaches the destination."""
    project(tmp_path, stream_key)
    proc = start(tmp_path)
    total = 0
    try:
        consuming(streams, stream_key, proc)
        for _ in range(3):
            streams.add(stream_key, people(total, total + 200))
            total += 200
            eventually(lambda n=total: len(ids(tmp_path)) > n - 200, what="some rows")
            kill(proc)
            streams.add(stream_key, people(total, total + 100))
            total += 100
            proc = start(tmp_path)
        eventually(lambda: ids(tmp_path) == set(range(total)), timeout=90,
                   what=lambda: f"{total - len(ids(tmp_path))} rows missing")
        eventually(lambda: streams.group(stream_key, GROUP)["pending"] == 0,
                   what="every entry acked")
    finally:
        stop(proc)


@pytest.mark.slow
def test_an_entry_is_acked_only_after_its_commit(tmp_path, streams, stream_key):
    """Killed after the entries were delivered to conn but before their micro-batch was
    committed (a long max_latency_ms holds it): they stay pending in the group, and the
    restarted follower reads them again and delivers them."""
    project(tmp_path, stream_key, max_latency_ms=4000)
    proc = start(tmp_path)
    try:
        consuming(streams, stream_key, proc)
        streams.add(stream_key, people(0, 5))
        eventually(lambda: streams.group(stream_key, GROUP)["pending"] == 5,
                   what="5 entries delivered to the follower")
        kill(proc)
        assert ids(tmp_path) == set()
        assert streams.group(stream_key, GROUP)["pending"] == 5
        proc = start(tmp_path)
        eventually(lambda: ids(tmp_path) == set(range(5)), what="the 5 rows after restart")
        eventually(lambda: streams.group(stream_key, GROUP)["pending"] == 0,
                   what="the 5 entries acked")
    finally:
        stop(proc)


@pytest.mark.slow
def test_a_malformed_entry_is_rejected_listed_and_then_acked(tmp_path, streams, stream_key):
    project(tmp_path, stream_key)
    proc = start(tmp_path)
    try:
        consuming(streams, stream_key, proc)
        bad = streams.add(stream_key, [*people(0, 2), b'{"id": 7, "email": ', *people(2, 3)])[2]
        no_field = streams.r.xadd(stream_key, {"other": "x"}).decode()
        eventually(lambda: ids(tmp_path) == {0, 1, 2}, what="the 3 good rows")
        eventually(lambda: streams.group(stream_key, GROUP)["pending"] == 0,
                   what="every entry acked, the malformed ones included")
    finally:
        stop(proc)
    out = subprocess.run([CONN, "rejected", "q2f", "--json", "-p", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    reasons = {str(r["key"]): r["reason"] for r in json.loads(out.stdout)["rejected"]}
    assert sorted(reasons) == sorted([f"{stream_key}#{bad}", f"{stream_key}#{no_field}"])
    assert "not valid JSON" in reasons[f"{stream_key}#{bad}"]
    assert "no field 'data'" in reasons[f"{stream_key}#{no_field}"]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateServer]:
    """A redis-server of the test's own (append-only file, synced at every write, so a
    restart keeps the stream and its group), which it may restart."""
    import shutil

    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    server = PrivateServer(["redis-server", "--port", "{port}", "--bind", "127.0.0.1",
                                "--dir", "{dir}", "--appendonly", "yes",
                                "--appendfsync", "always", "--save", ""],
                               tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_redis_restart_in_mid_stream_loses_nothing(tmp_path, private_redis, fault_server):
    """The follower's Redis restarts twice (down 1 s each time) while entries keep
    coming and requests are in flight to a slow webhook: the follower reconnects by
    itself (with backoff, one log line each way), reads its pending entries again,
    every entry arrives, and nothing was sent twice but the requests in flight, under
    their original idempotency keys."""
    import redis

    url = f"redis://127.0.0.1:{private_redis.port}/0"
    key = redis_testing.stream_key()
    queue_project(tmp_path, "redis_streams", {"url": url, "key": key, "group": GROUP},
                  hook_url=fault_server.url + "/hook")

    def add(messages: list[dict]) -> None:
        for _ in range(100):  # the server may be restarting: publish when it is back
            try:
                r = redis.Redis.from_url(url, socket_connect_timeout=1)
                pipe = r.pipeline(transaction=True)  # all or none: retried whole
                for m in messages:
                    pipe.xadd(key, {"data": json.dumps(m)})
                pipe.execute()
                return
            except redis.ConnectionError:
                time.sleep(0.1)

    def group() -> dict:
        r = redis.Redis.from_url(url, socket_connect_timeout=1)
        return next(g for g in r.xinfo_groups(key) if g["name"] == GROUP.encode())

    _, changed = kit.follow_through_cuts(tmp_path, fault_server, add,
                                         lambda: group()["consumers"] > 0,
                                         private_redis.restart)
    assert not changed, f"re-sent under another idempotency key: {changed}"
    eventually(lambda: group()["pending"] == 0, what="every entry acked")

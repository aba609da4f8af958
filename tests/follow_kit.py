"""What the core's follow tests share: a project following one source into the files
destination or a loopback webhook, the real ``conn sync --follow`` in a subprocess, and
reading back what arrived (tests/test_follow_*.py). Waiting and private servers:
:mod:`conn.testing.services`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from conn.testing.services import eventually

CONN = str(Path(sys.executable).with_name("conn"))
#: The columns every queue test declares, and the mapping that sends them on.
COLUMNS = {"id": "integer", "email": "string", "status": "string"}


def queue_project(folder: Path, source_type: str, config: dict[str, Any], *,
                  max_latency_ms: int = 100, hook_url: str | None = None,
                  follow: bool = False) -> None:
    """``conn.yml`` with the source ``queue`` (``config`` plus the declared columns)
    followed by the sync ``q2f`` into ``landing`` (the files destination) or, with
    ``hook_url``, into ``hook`` (the webhook, small requests so that several are in
    flight); with ``follow`` the sync says ``follow: true`` (a job of ``conn serve``)."""
    dest = "hook" if hook_url else "landing"
    destinations: dict[str, Any] = {"landing": {"type": "files", "config": {
        "path": str(folder / "out")}}}
    if hook_url:
        destinations["hook"] = {"type": "webhook", "config": {
            "url": hook_url, "batch_size": 20, "concurrency": 2, "max_attempts": 3}}
    doc = {"version": 1,
           "sources": {"queue": {"type": source_type, "config": {
               **config, "name": "events", "columns": COLUMNS, "primary_key": "id"}}},
           "destinations": destinations,
           "syncs": {"q2f": {"source": "queue", "stream": "events", "destination": dest,
                             "object": "records", "match_key": "id",
                             "max_latency_ms": max_latency_ms,
                             "mapping": {"id": "id", "email": "email", "status": "status"},
                             **({"follow": True} if follow else {})}}}
    (folder / "conn.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def start(folder: Path, source: str = "queue", dest: str = "landing",
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """``conn sync SOURCE DEST --follow`` on the project in ``folder``."""
    env = {**os.environ, "CONN_PLUGINS_STRICT": "1", **(env or {})}
    return subprocess.Popen([CONN, "sync", source, dest, "--follow", "-p", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    """SIGTERM, then the exit code and stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes its pipes


def delivered(folder: Path) -> list[dict[str, Any]]:
    """The records the files destination wrote, in order: its complete lines. A last
    line without its newline is a write in progress or one a killed follower left
    behind, which the destination cuts when it next opens the log (its README,
    "Durability"): not a record."""
    path = folder / "out" / "records.jsonl"
    if not path.exists():
        return []
    complete = path.read_bytes().rpartition(b"\n")[0].decode()
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def ids(folder: Path) -> set[int]:
    return {r["id"] for r in delivered(folder)}


def people(lo: int, hi: int, status: str = "new") -> list[dict[str, Any]]:
    return [{"id": i, "email": f"p{i}@example.com", "status": status} for i in range(lo, hi)]


def consuming(bound: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Wait until ``bound()`` says the follower reads from its source (failing at once
    when the follower exited)."""
    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the follower exited: {proc.stderr.read().decode()}")
        try:
            return bound()
        except Exception:  # the group or consumer does not exist yet
            return False

    eventually(ready, what=what)


def arrivals(requests: Iterable[Any]) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Per change (a record's JSON) received by a webhook receiver: how many times it
    arrived, and under which idempotency keys."""
    count: dict[str, int] = {}
    keys: dict[str, set[str]] = {}
    for req in requests:
        body = req.json or {}
        for rec, ikey in zip(body.get("records", []), body.get("idempotency_keys", []),
                             strict=True):
            change = json.dumps(rec, sort_keys=True)
            keys.setdefault(change, set()).add(ikey)
            count[change] = count.get(change, 0) + 1
    return count, keys


def received_ids(requests: Iterable[Any]) -> set[int]:
    """Record ids a webhook receiver got in upsert requests."""
    return {r["id"] for req in requests if req.json
            for r in req.json.get("records", [])}


def assert_clean_log(stderr: str, *, secrets: Iterable[str] = ()) -> None:
    """A follower's log after a lost connection: the loss and the reconnection each on
    one line, no traceback, none of ``secrets``."""
    assert "connection lost" in stderr and "reconnected after" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    for s in secrets:
        assert s not in stderr, f"{s!r} in the log"


def follow_through_cuts(folder: Path, receiver: Any, publish: Callable[[list[dict]], Any],
                        bound: Callable[[], bool], cut: Callable[[], Any], *,
                        cuts: int = 2, total: int = 300, secrets: Iterable[str] = (),
                        source: str = "queue", settled: Callable[[], Any] | None = None,
                        ) -> tuple[int, list[str]]:
    """While a follower sends to the webhook ``receiver`` (a slow one: requests are in
    flight), publish ``total`` messages in ``cuts + 1`` parts, 10 at a time, and after
    each part but the last call ``cut()`` (kill the follower's connection, restart the
    server) once a request of that part has arrived, the part still being published.
    The follower must reconnect by itself: every message arrives, the log says so
    cleanly. ``settled`` (a text naming what is still missing, empty once everything
    arrived) lets a caller that also publishes updates wait for them before the stop:
    the stop abandons requests not yet sent. Returns the records re-sent and the changes
    re-sent under another idempotency key (for the caller to judge)."""
    import threading

    receiver.configure(delay=0.2)
    proc = start(folder, source, "hook")
    part = total // (cuts + 1)

    def write(lo: int, hi: int) -> None:
        for i in range(lo, hi, 10):
            publish(people(i, min(hi, i + 10)))
            time.sleep(0.03)

    err, failure = "", None
    try:
        consuming(bound, proc, "the follower's consumer")
        for k in range(cuts + 1):
            seen = len(receiver.requests)
            writer = threading.Thread(target=write, daemon=True,
                                      args=(k * part, total if k == cuts else (k + 1) * part))
            writer.start()
            if k < cuts:
                eventually(lambda seen=seen: len(receiver.requests) > seen,
                           what=lambda: "a request" + _exited(proc))
                cut()
            writer.join(timeout=120)
        eventually(lambda: received_ids(receiver.requests) == set(range(total)),
                   timeout=120, what=lambda: f"{total - len(received_ids(receiver.requests))}"
                   f" records missing; follower exit {proc.poll()}" + _exited(proc))
        if settled is not None:
            eventually(lambda: not settled(), timeout=60,
                       what=lambda: f"{settled()}; follower exit {proc.poll()}" + _exited(proc))
    except AssertionError as exc:
        failure = exc
    finally:
        code, err = stop(proc)
    if failure is not None:  # what the follower logged tells why it stalled
        raise AssertionError(f"{failure}\nthe follower's log:\n{err[-6000:]}") from failure
    assert code == 130, err  # still following until told to stop
    assert_clean_log(err, secrets=secrets)
    count, keys = arrivals(receiver.requests)
    resent = sum(c - 1 for c in count.values())
    # A cut re-sends at most the requests in flight then (concurrency 2 x 20 records).
    assert resent <= cuts * 2 * 20, f"{resent} records re-sent by {cuts} cuts"
    return resent, [c for c, k in keys.items() if len(k) > 1]


def _exited(proc: subprocess.Popen) -> str:
    """The log of a follower that exited (empty while it runs)."""
    if proc.poll() is None or proc.stderr is None:
        return ""
    return ": " + proc.stderr.read().decode()[-4000:]

"""Reconnecting (README "Guarantees"): after a lost connection the source opens a new
one and binds its consumer again. Closing the connection it gave up must not count as
losing the new one."""

from __future__ import annotations

import time


def test_a_connection_given_up_does_not_mark_the_new_one_lost(nats_server, js_stream):
    """nats-py may restore a connection by itself after a server restart; the source
    then drops it (it binds its consumer again from its own acknowledged position).
    Closing that connection fires nats-py's disconnect callback: that callback must not
    mark the *new* connection as lost, or every pull after a reconnection ends at once
    and the follower reconnects forever without delivering anything (a follower stalled
    this way after a NATS restart)."""
    from conn_source_nats.source import NatsSource

    src = NatsSource({"stream": js_stream, "durable": "reconnect",
                      "columns": {"id": "integer"}, "primary_key": "id"})
    stream = src.discover()[0]
    try:
        nats_server.publish(f"{js_stream}.people", [{"id": 1}])
        changes = src.changes(stream, None, wait=0.2)
        first = next(b for b in changes if b.changes is not None and b.changes.num_rows)
        assert first.changes.column("id").to_pylist() == [1]
        # What nats-py's disconnect callback does when it loses the connection and
        # then restores it by itself (a short server restart):
        src._disconnected = True
        nats_server.publish(f"{js_stream}.people", [{"id": 2}])
        end = time.monotonic() + 15
        got: list[int] = []
        for batch in changes:
            if batch.changes is not None and batch.changes.num_rows:
                got += batch.changes.column("id").to_pylist()
                src.acknowledge(batch.position)
            if 2 in got or time.monotonic() > end:
                break
        assert 2 in got, "no message delivered after the reconnection"
        changes.close()
    finally:
        src.close()

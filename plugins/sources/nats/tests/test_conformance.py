"""conn's source conformance suite (conn.testing.conformance), streaming section
included, against the local NATS server. Each check gets its own JetStream stream."""

from __future__ import annotations

import itertools
from typing import Any

from conn.testing.conformance import SuiteContext, source_suite
from conn_source_nats.source import NatsSource

ROWS = 300
COLUMNS = {"id": "integer", "email": "string", "name": "string"}
_ids = itertools.count(10_000)


def _stream(ctx: SuiteContext) -> str:
    if "stream" not in ctx.extra:
        ctx.extra["stream"] = ctx.fixture("js_stream")
    return ctx.extra["stream"]


def config(ctx: SuiteContext) -> dict[str, Any]:
    """A stream holding ROWS messages (published on first use)."""
    name = _stream(ctx)
    if "filled" not in ctx.extra:
        ctx.fixture("nats_server").publish(f"{name}.people", [
            {"id": i, "email": f"person{i}@example.com", "name": f"Zoë {i}"}
            for i in range(ROWS)])
        ctx.extra["filled"] = True
    return {"url": "nats://127.0.0.1:4222", "stream": name, "name": "people",
            "durable": "conformance", "columns": COLUMNS, "primary_key": "id"}


def changes_config(ctx: SuiteContext) -> dict[str, Any]:
    """The test's own stream; its consumer starts with messages published after it."""
    return {"stream": _stream(ctx), "name": "people", "durable": "follow",
            "deliver": "new", "ack_wait_seconds": 2, "columns": COLUMNS, "primary_key": "id"}


def make_changes(ctx: SuiteContext, round_: int) -> int:
    ids = [next(_ids) for _ in range(3)]
    ctx.fixture("nats_server").publish(f"{_stream(ctx)}.people", [
        {"id": i, "email": f"r{round_}-{i}@example.com"} for i in ids])
    return 3


TestNatsSourceConformance = source_suite(
    NatsSource,
    config=config,
    stream="people",
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(ROWS)],
    bad_config={"stream": "S", "durable": "d", "columns": {"id": "integer"},
                "primary_key": "id", "fetch": 0},
    failing_config={"url": "nats://nobody:s3cretPassw0rd-conf@127.0.0.1:1", "stream": "S",
                    "durable": "d", "columns": {"id": "integer"}, "primary_key": "id"},
    secret_values=["s3cretPassw0rd-conf"],
    batch_rows=100,
    changes=make_changes,
    changes_stream="people",
    changes_config=changes_config,
)

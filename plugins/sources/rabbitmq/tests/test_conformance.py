"""conn's source conformance suite (conn.testing.conformance), streaming section
included, against the local RabbitMQ server. Each check gets its own queues."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from conn.testing.conformance import SuiteContext, source_suite
from conn_source_rabbitmq.source import RabbitMQSource

ROWS = 300
COLUMNS = {"id": "integer", "email": "string", "name": "string"}
_ids = itertools.count(10_000)


def _queue(ctx: SuiteContext, which: str) -> str:
    if which not in ctx.extra:
        rabbit = ctx.fixture("rabbit")
        name = f"conn_conf_{which}_{uuid.uuid4().hex[:8]}"
        rabbit.declare(name)
        ctx.request.addfinalizer(lambda: rabbit.delete(name))
        ctx.extra[which] = name
    return ctx.extra[which]


def config(ctx: SuiteContext) -> dict[str, Any]:
    """A queue holding ROWS messages (published on first use)."""
    name = _queue(ctx, "read")
    if "filled" not in ctx.extra:
        ctx.fixture("rabbit").publish(name, [
            {"id": i, "email": f"person{i}@example.com", "name": f"Zoë {i}"}
            for i in range(ROWS)])
        ctx.extra["filled"] = True
    return {"url": "amqp://guest:guest@127.0.0.1:5672/%2F", "queue": name, "name": "people",
            "columns": COLUMNS, "primary_key": "id"}


def changes_config(ctx: SuiteContext) -> dict[str, Any]:
    """An empty queue of the check's own."""
    return {"queue": _queue(ctx, "follow"), "name": "people", "columns": COLUMNS,
            "primary_key": "id"}


def make_changes(ctx: SuiteContext, round_: int) -> int:
    ids = [next(_ids) for _ in range(3)]
    ctx.fixture("rabbit").publish(_queue(ctx, "follow"), [
        {"id": i, "email": f"r{round_}-{i}@example.com"} for i in ids])
    return 3


TestRabbitMQSourceConformance = source_suite(
    RabbitMQSource,
    config=config,
    stream="people",
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(ROWS)],
    bad_config={"queue": "q", "columns": {"id": "integer"}, "primary_key": "id",
                "prefetch": 0},
    failing_config={"url": "amqp://nobody:s3cretPassw0rd-conf@127.0.0.1:1/%2F", "queue": "q",
                    "columns": {"id": "integer"}, "primary_key": "id"},
    secret_values=["s3cretPassw0rd-conf"],
    batch_rows=100,
    changes=make_changes,
    changes_stream="people",
    changes_config=changes_config,
)

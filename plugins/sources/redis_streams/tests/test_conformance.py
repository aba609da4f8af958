"""conn's source conformance suite (conn.testing.conformance), streaming section
included, against the local Redis server. Each check gets its own stream keys."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from conn.testing.conformance import SuiteContext, source_suite
from conn_source_redis_streams.source import RedisStreamsSource

ROWS = 300
COLUMNS = {"id": "integer", "email": "string", "name": "string"}
_ids = itertools.count(10_000)


def _key(ctx: SuiteContext, which: str) -> str:
    if which not in ctx.extra:
        streams = ctx.fixture("streams")
        key = f"conn:conf:{which}:{uuid.uuid4().hex[:8]}"
        ctx.request.addfinalizer(lambda: streams.r.delete(key))
        ctx.extra[which] = key
    return ctx.extra[which]


def config(ctx: SuiteContext) -> dict[str, Any]:
    """A stream holding ROWS entries (added on first use)."""
    key = _key(ctx, "read")
    if "filled" not in ctx.extra:
        ctx.fixture("streams").add(key, [
            {"id": i, "email": f"person{i}@example.com", "name": f"Zoë {i}"}
            for i in range(ROWS)])
        ctx.extra["filled"] = True
    return {"url": "redis://127.0.0.1:6379/0", "key": key, "group": "conformance",
            "name": "people", "columns": COLUMNS, "primary_key": "id"}


def changes_config(ctx: SuiteContext) -> dict[str, Any]:
    """A stream of the check's own; its group starts with entries added after it."""
    return {"key": _key(ctx, "follow"), "group": "follow", "deliver": "new",
            "name": "people", "columns": COLUMNS, "primary_key": "id"}


def make_changes(ctx: SuiteContext, round_: int) -> int:
    ids = [next(_ids) for _ in range(3)]
    ctx.fixture("streams").add(_key(ctx, "follow"), [
        {"id": i, "email": f"r{round_}-{i}@example.com"} for i in ids])
    return 3


TestRedisStreamsSourceConformance = source_suite(
    RedisStreamsSource,
    config=config,
    stream="people",
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(ROWS)],
    bad_config={"key": "k", "group": "g", "columns": {"id": "integer"}, "primary_key": "id",
                "count": 0},
    failing_config={"url": "redis://:s3cretPassw0rd-conf@127.0.0.1:1/0", "key": "k",
                    "group": "g", "columns": {"id": "integer"}, "primary_key": "id"},
    secret_values=["s3cretPassw0rd-conf"],
    batch_rows=100,
    changes=make_changes,
    changes_stream="people",
    changes_config=changes_config,
)

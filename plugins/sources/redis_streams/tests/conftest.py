"""Fixtures: the local Redis server (tests skip, saying why, when it is not reachable)
and stream keys unique to each test, deleted afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

URL = "redis://127.0.0.1:6379/0"


class Streams:
    """Helpers over redis-py for the tests."""

    def __init__(self) -> None:
        import redis

        self.r = redis.Redis.from_url(URL, socket_connect_timeout=2)

    def add(self, key: str, messages: Iterable[dict[str, Any] | bytes]) -> list[str]:
        """XADD each message as field ``data``; returns the entry IDs."""
        pipe = self.r.pipeline(transaction=False)
        for m in messages:
            pipe.xadd(key, {"data": m if isinstance(m, bytes) else json.dumps(m)})
        return [i.decode() for i in pipe.execute()]

    def group(self, key: str, group: str) -> dict[str, Any]:
        for g in self.r.xinfo_groups(key):
            if g["name"].decode() == group:
                return g
        raise AssertionError(f"no group {group!r} on {key!r}")


def _reachable() -> str | None:
    try:
        Streams().r.ping()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def streams() -> Streams:
    reason = _reachable()
    if reason is not None:
        pytest.skip(f"Redis at 127.0.0.1:6379 is not reachable: {reason}")
    return Streams()


@pytest.fixture
def stream_key(streams: Streams) -> Iterator[str]:
    """A stream key of the test's own, deleted after it."""
    key = "conn:t:" + uuid.uuid4().hex[:10]
    yield key
    streams.r.delete(key)

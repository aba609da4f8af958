"""Test support, not used by the source: helpers over redis-py for tests against a
Redis server, and the pytest fixtures the plugin's tests and conn's end-to-end follow
tests share (redis-py and pytest are imported when used):
``streams, stream_key = fixtures(pytest.skip)`` in a conftest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from conn.testing import services

#: The local server the tests use.
URL = "redis://127.0.0.1:6379/0"


class Streams:
    """Helpers over redis-py for the tests; :attr:`r` is the client."""

    what = "Redis at 127.0.0.1:6379"

    def __init__(self, url: str = URL) -> None:
        import redis

        self.r = redis.Redis.from_url(url, socket_connect_timeout=2)

    def unreachable(self) -> str | None:
        """Why the server cannot be reached; None when it can."""
        try:
            self.r.ping()
            return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def fresh(self) -> str:
        """A stream key of the test's own (the stream is made by its first XADD)."""
        return stream_key()

    def remove(self, key: str) -> None:
        self.r.delete(key)

    def add(self, key: str, messages: Iterable[dict[str, Any] | bytes]) -> list[str]:
        """XADD each message as field ``data``; returns the entry IDs."""
        pipe = self.r.pipeline(transaction=False)
        for m in messages:
            pipe.xadd(key, {"data": m if isinstance(m, bytes) else json.dumps(m)})
        return [i.decode() for i in pipe.execute()]

    def group(self, key: str, group: str) -> dict[str, Any]:
        """XINFO GROUPS' entry of ``group`` on ``key`` (``consumers``, ``pending``,
        ``lag``, ...)."""
        for g in self.r.xinfo_groups(key):
            if g["name"].decode() == group:
                return g
        raise AssertionError(f"no group {group!r} on {key!r}")


def stream_key() -> str:
    """A stream key of the test's own."""
    return "conn:t:" + uuid.uuid4().hex[:10]


def fixtures(skip: Callable[[str], Any]) -> tuple[Any, Any]:
    """The fixtures ``streams`` (session-wide: :class:`Streams` on :data:`URL`;
    ``skip(reason)`` when it is not reachable) and ``stream_key`` (a key of the test's
    own, deleted after it)."""
    return services.fixtures(Streams, skip, service="streams", resource="stream_key")

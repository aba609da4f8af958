"""check() and config errors of the redis_streams source (README "Guarantees", "Set-up"):
what a user sees when the server cannot be reached or the configuration is wrong."""

from __future__ import annotations

import pytest


def test_check_explains_an_unreachable_server():
    from conn.errors import CheckFailed
    from conn_source_redis_streams.source import RedisStreamsSource

    src = RedisStreamsSource({"url": "redis://127.0.0.1:1/0", "key": "k", "group": "g",
                              "columns": {"id": "integer"}, "primary_key": "id"})
    with pytest.raises(CheckFailed, match=r"cannot reach Redis at 127\.0\.0\.1:1"):
        src.check()


def test_check_refuses_a_key_that_is_not_a_stream(streams, stream_key):
    from conn.errors import CheckFailed
    from conn_source_redis_streams.source import RedisStreamsSource

    streams.r.set(stream_key, "x")
    src = RedisStreamsSource({"key": stream_key, "group": "g",
                              "columns": {"id": "integer"}, "primary_key": "id"})
    with pytest.raises(CheckFailed, match="holds a string, not a stream"):
        src.check()

"""check() and config errors of the nats source (README "Guarantees", "Set-up"):
what a user sees when the server cannot be reached or the configuration is wrong."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conn.testing.services import PrivateServer


def test_check_explains_an_unreachable_server():
    from conn.errors import CheckFailed
    from conn_source_nats.source import NatsSource

    src = NatsSource({"url": "nats://127.0.0.1:1", "stream": "S", "durable": "d",
                      "columns": {"id": "integer"}, "primary_key": "id"})
    with pytest.raises(CheckFailed, match=r"cannot reach NATS at 127\.0\.0\.1:1"):
        src.check()
    src.close()


def test_check_names_a_missing_stream(nats_server):
    from conn.errors import CheckFailed
    from conn_source_nats.source import NatsSource

    src = NatsSource({"stream": "CONN_NO_SUCH_STREAM", "durable": "d",
                      "columns": {"id": "integer"}, "primary_key": "id"})
    with pytest.raises(CheckFailed, match="no JetStream stream 'CONN_NO_SUCH_STREAM'"):
        src.check()
    src.close()


def test_a_primary_key_outside_the_columns_is_a_config_error():
    from conn.errors import ConfigError
    from conn_source_nats.source import NatsSource

    with pytest.raises(ConfigError) as err:
        NatsSource({"stream": "S", "durable": "d", "columns": {"id": "integer"},
                    "primary_key": "email"})
    assert err.value.path == "config.primary_key"


@pytest.fixture
def plain_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server of the test's own, on a free port, without JetStream."""
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed: cannot start a server without JetStream")
    server = PrivateServer([binary, "-a", "127.0.0.1", "-p", "{port}"], tmp_path / "nats")
    server.start(timeout=10)
    try:
        yield f"nats://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_check_explains_that_jetstream_is_disabled(plain_nats):
    from conn.errors import CheckFailed
    from conn_source_nats.source import NatsSource

    src = NatsSource({"url": plain_nats, "stream": "S", "durable": "d",
                      "columns": {"id": "integer"}, "primary_key": "id"})
    try:
        with pytest.raises(CheckFailed, match=r"JetStream is not enabled.*-js"):
            src.check()
    finally:
        src.close()

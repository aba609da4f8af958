"""Fixtures: the local NATS server with JetStream (tests skip, saying why, when it is
not reachable or JetStream is off) and JetStream streams unique to each test, deleted
afterwards."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

URL = "nats://127.0.0.1:4222"


class Nats:
    """Synchronous helpers over nats-py (a connection per call: tests are not hot)."""

    def _do(self, fn: Callable[[Any], Any]) -> Any:
        import nats

        async def go() -> Any:
            nc = await nats.connect(URL, connect_timeout=2, max_reconnect_attempts=0)
            try:
                return await fn(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(go())

    def add_stream(self, name: str) -> None:
        self._do(lambda js: js.add_stream(name=name, subjects=[f"{name}.>"]))

    def delete_stream(self, name: str) -> None:
        self._do(lambda js: js.delete_stream(name))

    def publish(self, subject: str, messages: Iterable[dict[str, Any] | bytes]) -> list[int]:
        """Publish (JetStream-acknowledged); returns the stream sequences."""
        payloads = [m if isinstance(m, bytes) else json.dumps(m).encode() for m in messages]

        async def go(js: Any) -> list[int]:
            seqs = []
            for i in range(0, len(payloads), 500):
                acks = await asyncio.gather(*(js.publish(subject, p)
                                              for p in payloads[i:i + 500]))
                seqs += [a.seq for a in acks]
            return seqs

        return self._do(go)

    def consumer(self, stream: str, durable: str) -> Any:
        return self._do(lambda js: js.consumer_info(stream, durable))


def _reachable() -> str | None:
    try:
        Nats()._do(lambda js: js.account_info())
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def nats_server() -> Nats:
    reason = _reachable()
    if reason is not None:
        pytest.skip(f"NATS with JetStream at 127.0.0.1:4222 is not reachable: {reason}")
    return Nats()


@pytest.fixture
def js_stream(nats_server: Nats) -> Iterator[str]:
    """A fresh JetStream stream (subjects NAME.>), deleted after the test."""
    name = "CONN_T_" + uuid.uuid4().hex[:10].upper()
    nats_server.add_stream(name)
    yield name
    nats_server.delete_stream(name)

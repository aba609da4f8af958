"""Test support, not used by the source: synchronous helpers over nats-py for tests
against a NATS server with JetStream, and the pytest fixtures the plugin's tests and
conn's end-to-end follow tests share (nats-py and pytest are imported when used):
``nats_server, js_stream = fixtures(pytest.skip)`` in a conftest.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from conn.testing import services

#: The local server the tests use.
URL = "nats://127.0.0.1:4222"


class Nats:
    """Synchronous helpers over nats-py (a connection per call: tests are not hot)."""

    what = "NATS with JetStream at 127.0.0.1:4222"

    def __init__(self, url: str = URL) -> None:
        self.url = url

    def _do(self, fn: Callable[[Any], Any]) -> Any:
        import nats

        async def go() -> Any:
            nc = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=0)
            try:
                return await fn(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(go())

    def unreachable(self) -> str | None:
        """Why the server cannot be used (not reachable, or JetStream off); None when
        it can."""
        try:
            self._do(lambda js: js.account_info())
            return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def add_stream(self, name: str) -> None:
        """A stream ``name`` taking the subjects ``name.>``."""
        self._do(lambda js: js.add_stream(name=name, subjects=[f"{name}.>"]))

    def delete_stream(self, name: str) -> None:
        self._do(lambda js: js.delete_stream(name))

    def fresh(self) -> str:
        """A stream of the test's own (:meth:`add_stream`)."""
        name = stream_name()
        self.add_stream(name)
        return name

    remove = delete_stream

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
        """The durable consumer's info (``num_waiting``, ``num_ack_pending``, ...)."""
        return self._do(lambda js: js.consumer_info(stream, durable))


def stream_name() -> str:
    """A stream name of the test's own."""
    return "CONN_T_" + uuid.uuid4().hex[:10].upper()


def fixtures(skip: Callable[[str], Any]) -> tuple[Any, Any]:
    """The fixtures ``nats_server`` (session-wide: a :class:`Nats` on :data:`URL`;
    ``skip(reason)`` when it is not reachable or JetStream is off) and ``js_stream`` (a
    fresh stream, subjects ``NAME.>``, deleted after the test)."""
    return services.fixtures(Nats, skip, service="nats_server", resource="js_stream")

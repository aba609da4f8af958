"""Test support, not used by the source: synchronous helpers over pika for tests against
a RabbitMQ server, and the pytest fixtures the plugin's tests and conn's end-to-end
follow tests share (pika and pytest are imported when used):
``rabbit, queue_name = fixtures(pytest.skip)`` in a conftest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from conn.testing import services

#: The local server the tests use (guest/guest).
URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class Rabbit:
    """Synchronous helpers over pika (a connection per call: tests are not hot)."""

    what = "RabbitMQ at 127.0.0.1:5672 (guest/guest)"

    def __init__(self, url: str = URL) -> None:
        self.url = url

    def _conn(self) -> Any:
        """A new blocking connection (one attempt, 3 s socket timeout)."""
        import pika

        params = pika.URLParameters(self.url)
        params.connection_attempts = 1
        params.socket_timeout = 3
        return pika.BlockingConnection(params)

    def unreachable(self) -> str | None:
        """Why the server cannot be reached; None when it can."""
        try:
            self._conn().close()
            return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def declare(self, queue: str) -> None:
        """A durable queue ``queue``."""
        with self._conn() as conn:
            conn.channel().queue_declare(queue, durable=True)

    def delete(self, queue: str) -> None:
        with self._conn() as conn:
            conn.channel().queue_delete(queue)

    def fresh(self) -> str:
        """A durable queue of the test's own (:meth:`declare`)."""
        name = "conn_t_" + uuid.uuid4().hex[:10]
        self.declare(name)
        return name

    remove = delete

    def publish(self, queue: str, messages: Iterable[dict[str, Any] | bytes]) -> None:
        """Publish persistent messages to ``queue`` (publisher confirms on)."""
        import pika

        props = pika.BasicProperties(delivery_mode=2)
        with self._conn() as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            for m in messages:
                body = m if isinstance(m, bytes) else json.dumps(m).encode()
                ch.basic_publish("", queue, body, props)

    def ready(self, queue: str) -> int:
        """Messages ready for delivery (not delivered, or requeued)."""
        with self._conn() as conn:
            return int(conn.channel().queue_declare(queue, passive=True)
                       .method.message_count)

    def consumers(self, queue: str) -> int:
        """Consumers attached to ``queue``."""
        with self._conn() as conn:
            return int(conn.channel().queue_declare(queue, passive=True)
                       .method.consumer_count)


def fixtures(skip: Callable[[str], Any]) -> tuple[Any, Any]:
    """The fixtures ``rabbit`` (session-wide: a :class:`Rabbit` on :data:`URL`;
    ``skip(reason)`` when it is not reachable) and ``queue_name`` (a fresh durable
    queue, deleted after the test)."""
    return services.fixtures(Rabbit, skip, service="rabbit", resource="queue_name")

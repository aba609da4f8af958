"""Fixtures: the local RabbitMQ server (guest/guest; tests skip, saying why, when it is
not reachable) and queues unique to each test, deleted afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class Rabbit:
    """Synchronous helpers over pika (a connection per call: tests are not hot)."""

    def _conn(self) -> Any:
        import pika

        params = pika.URLParameters(URL)
        params.connection_attempts = 1
        params.socket_timeout = 3
        return pika.BlockingConnection(params)

    def declare(self, queue: str) -> None:
        with self._conn() as conn:
            conn.channel().queue_declare(queue, durable=True)

    def delete(self, queue: str) -> None:
        with self._conn() as conn:
            conn.channel().queue_delete(queue)

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
        with self._conn() as conn:
            return int(conn.channel().queue_declare(queue, passive=True)
                       .method.consumer_count)


def _reachable() -> str | None:
    try:
        Rabbit()._conn().close()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def rabbit() -> Rabbit:
    reason = _reachable()
    if reason is not None:
        pytest.skip(f"RabbitMQ at 127.0.0.1:5672 (guest/guest) is not reachable: {reason}")
    return Rabbit()


@pytest.fixture
def queue_name(rabbit: Rabbit) -> Iterator[str]:
    """A fresh durable queue, deleted after the test."""
    name = "conn_t_" + uuid.uuid4().hex[:10]
    rabbit.declare(name)
    yield name
    rabbit.delete(name)

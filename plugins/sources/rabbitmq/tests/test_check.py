"""check() and config errors of the rabbitmq source (README "Guarantees", "Set-up"):
what a user sees when the server cannot be reached or the configuration is wrong."""

from __future__ import annotations

import os

import pytest


def test_check_explains_an_unreachable_server():
    from conn.errors import CheckFailed
    from conn_source_rabbitmq.source import RabbitMQSource

    src = RabbitMQSource({"url": "amqp://guest:guest@127.0.0.1:1/%2F", "queue": "q",
                          "columns": {"id": "integer"}, "primary_key": "id"})
    with pytest.raises(CheckFailed, match=r"cannot reach RabbitMQ at 127\.0\.0\.1:1"):
        src.check()


def test_check_names_a_missing_queue_and_declare_creates_it(rabbit):
    from conn.errors import CheckFailed
    from conn_source_rabbitmq.source import RabbitMQSource

    name = "conn_t_missing_" + os.urandom(4).hex()
    cfg = {"queue": name, "columns": {"id": "integer"}, "primary_key": "id"}
    with pytest.raises(CheckFailed, match=r"no queue .* set declare: true"):
        RabbitMQSource(cfg).check()
    RabbitMQSource({**cfg, "declare": True}).check()
    try:
        assert rabbit.ready(name) == 0
    finally:
        rabbit.delete(name)

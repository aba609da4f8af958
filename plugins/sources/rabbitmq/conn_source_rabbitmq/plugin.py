"""Entry point module of ``conn-source-rabbitmq``: registers the ``rabbitmq`` source type.

Imports nothing heavy: pika and pyarrow are imported when the source is used.
"""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    from conn_source_rabbitmq.source import RabbitMQSource

    register(RabbitMQSource)

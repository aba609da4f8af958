"""Entry point module of ``conn-source-nats``: registers the ``nats`` source type.

Imports nothing heavy: nats-py and pyarrow are imported when the source is used.
"""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    from conn_source_nats.source import NatsSource

    register(NatsSource)

"""Entry point of ``conn.destinations``: registers the PostgreSQL destination (lazily)."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    from conn_postgres.destination import PostgresDestination

    register(PostgresDestination)

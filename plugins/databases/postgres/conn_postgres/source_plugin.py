"""Entry point of ``conn.sources``: registers the PostgreSQL source (imports lazily)."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    from conn_postgres.source import PostgresSource

    register(PostgresSource)

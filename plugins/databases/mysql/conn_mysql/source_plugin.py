"""Entry point of ``conn.sources``: registers the MariaDB/MySQL source (imports lazily)."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    from conn_mysql.source import MysqlSource

    register(MysqlSource)

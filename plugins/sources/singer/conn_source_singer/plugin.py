"""Entry point module of ``conn-source-singer``: registers the ``singer`` source.
Importing it is cheap; the source class (and pyarrow) load only when the registry asks
for it."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_sources(register: Callable[..., None]) -> None:
    from conn_source_singer.source import SingerSource

    register(SingerSource)

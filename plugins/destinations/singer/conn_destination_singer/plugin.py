"""Entry point module of ``conn-destination-singer``: registers the ``singer``
destination. Importing it is cheap; the destination class loads only when the registry
asks for it."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    from conn_destination_singer.destination import SingerDestination

    register(SingerDestination)

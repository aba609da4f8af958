"""Entry-point module (``conn.destinations`` → ``meta_audiences``); imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    """Register :class:`~conn_destination_meta_audiences.destination.MetaAudiencesDestination`."""
    from conn_destination_meta_audiences.destination import MetaAudiencesDestination

    register(MetaAudiencesDestination)

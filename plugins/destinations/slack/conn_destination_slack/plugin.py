"""Entry-point module (``conn.destinations`` → ``slack``); imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    """Register :class:`~conn_destination_slack.destination.SlackDestination`."""
    from conn_destination_slack.destination import SlackDestination

    register(SlackDestination)

"""Entry-point module (``conn.destinations`` → ``webhook``); imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    """Register :class:`~conn_destination_webhook.destination.WebhookDestination`."""
    from conn_destination_webhook.destination import WebhookDestination

    register(WebhookDestination)

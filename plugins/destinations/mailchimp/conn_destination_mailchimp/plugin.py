"""Entry-point module (``conn.destinations`` → ``mailchimp``); imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    """Register :class:`~conn_destination_mailchimp.destination.MailchimpDestination`."""
    from conn_destination_mailchimp.destination import MailchimpDestination

    register(MailchimpDestination)

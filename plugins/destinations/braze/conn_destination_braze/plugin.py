"""Entry point module of ``conn-destination-braze``: registers the ``braze``
destination.

Imports nothing heavy: httpx and the HTTP toolkit load when the destination is used.
"""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    """Register :class:`~conn_destination_braze.destination.BrazeDestination`."""
    from conn_destination_braze.destination import BrazeDestination

    register(BrazeDestination)

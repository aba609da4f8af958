"""Entry point module of ``conn-destination-files``: registers the ``files`` destination.

Imports nothing heavy: pyarrow and DuckDB are imported when the destination writes.
"""

from __future__ import annotations

from collections.abc import Callable

from conn import hookimpl

CONN_PLUGIN_API = "1.0"


@hookimpl
def register_destinations(register: Callable[..., None]) -> None:
    from conn_destination_files.destination import FilesDestination

    register(FilesDestination)

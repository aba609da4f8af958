"""One lazily opened DB-API connection per SQL connector."""

from __future__ import annotations

import abc
import contextlib
from typing import Any


class LazyConnection:
    """Mixin for SQL sources and destinations holding one DB-API connection.

    :meth:`_connection` opens it with :meth:`_open_connection` (the dialect's) on first
    use; :meth:`_drop_connection` closes it quietly (it may be broken) and forgets it, so
    the next use reconnects; :meth:`close` drops it. List the mixin before
    :class:`~conn.source.Source` / :class:`~conn.destination.Destination`.
    """

    _conn: Any = None

    @abc.abstractmethod
    def _open_connection(self) -> Any:
        """A new connection: the plugin's duty (the runtime classes are ABCs, so a plugin
        that forgets it cannot be instantiated)."""

    def _connection(self) -> Any:
        """The open connection, opened on first use."""
        if self._conn is None:
            self._conn = self._open_connection()
        return self._conn

    def _drop_connection(self) -> None:
        """Close the connection, ignoring errors, and forget it."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection (if any)."""
        self._drop_connection()

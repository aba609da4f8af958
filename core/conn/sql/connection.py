"""One lazily opened DB-API connection per SQL connector, and the queries every SQL
connector runs on it (catalog reads, the check)."""

from __future__ import annotations

import abc
import contextlib
from typing import Any, ClassVar

from conn.errors import CheckFailed, ConnError


class LazyConnection(abc.ABC):
    """Mixin for SQL sources and destinations holding one DB-API connection.

    :meth:`_connection` opens it with :meth:`_open_connection` (the dialect's duty) on
    first use; :meth:`_drop_connection` closes it quietly (it may be broken) and forgets
    it, so the next use reconnects; :meth:`close` drops it. :meth:`_fetchall` runs one
    statement and returns its rows, :meth:`check` runs :attr:`check_sql`. List the mixin
    before :class:`~conn.source.Source` / :class:`~conn.destination.Destination`.

    Dialects adapt three small hooks: :meth:`_execute` (how the driver takes
    parameters), :meth:`_finish` (what ends a statement's transaction: a rollback by
    default, as catalog reads change nothing) and :meth:`_error_message` (a short,
    redacted message of a driver error).
    """

    _conn: Any = None
    #: The cheap statement :meth:`check` runs.
    check_sql: ClassVar[str] = "SELECT 1"

    @abc.abstractmethod
    def _open_connection(self) -> Any:
        """A new connection: the plugin's duty."""

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
        """Close the connection (if any), then whatever the next class closes."""
        self._drop_connection()
        super_close = getattr(super(), "close", None)
        if super_close is not None:
            super_close()

    # -- queries ---------------------------------------------------------------------------

    def _execute(self, cursor: Any, sql: str, params: tuple[Any, ...]) -> None:
        """Run ``sql`` with ``params`` on ``cursor`` (the DB-API way; drivers that take
        parameters otherwise override it)."""
        if params:
            cursor.execute(sql, params)
        else:
            cursor.execute(sql)

    def _finish(self, conn: Any) -> None:
        """End the transaction of a statement run by :meth:`_fetchall`."""
        conn.rollback()

    def _error_message(self, exc: BaseException) -> str:
        """A short message of a driver error, secrets masked."""
        from conn import secrets

        return secrets.redact(str(exc))

    def _role(self) -> str:
        from conn.destination import Destination

        return "destination" if isinstance(self, Destination) else "source"

    def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement. A failure drops the connection (the next use
        reconnects) and raises :class:`~conn.errors.ConnError` naming the connector."""
        conn = self._connection()
        try:
            cur = conn.cursor()
            try:
                self._execute(cur, sql, params)
                rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
            finally:
                cur.close()
            self._finish(conn)
            return rows
        except Exception as exc:
            self._drop_connection()
            name = getattr(self, "instance", "")
            raise ConnError(f"{self._role()} {name!r}: {self._error_message(exc)}") from None

    def check(self) -> None:
        """Connect and run :attr:`check_sql`; :class:`~conn.errors.CheckFailed` with the
        driver's (redacted) reason otherwise."""
        try:
            self._fetchall(self.check_sql)
        except ConnError as exc:
            raise CheckFailed(str(exc)) from None

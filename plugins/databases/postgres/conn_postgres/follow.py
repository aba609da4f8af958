"""The PostgreSQL source's change stream: one table followed through a replication slot,
as :class:`~conn.streaming.ChangeBatch` es of the stream's Arrow types.

Positions are ``{"lsn": "X/Y"}``, the end of the last complete transaction a batch
covers: a restart from it redelivers every transaction committed after it (and, when a
transaction was handed out in several parts, the whole of that transaction; the planner
finds the part already delivered unchanged).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from conn.errors import ConnError
from conn.source import StreamInfo
from conn.streaming import OPERATION, ChangeBatch, SourceLag

from conn_postgres import pgtext
from conn_postgres.pgoutput import ChangeBuffer, SchemaChanged
from conn_postgres.replication import (
    Admin,
    ConnectionLost,
    ReplicationStream,
    Settings,
    position,
    position_lsn,
)

if TYPE_CHECKING:
    from conn.reconnect import Reconnect

log = logging.getLogger("conn_postgres.follow")


class Follower:
    """Follows one table of ``schema`` for the source ``instance``."""

    def __init__(self, config: Mapping[str, Any], schema: str, instance: str) -> None:
        self.config, self.schema, self.instance = config, schema, instance
        self.settings = Settings.of(config)
        self.admin = Admin(config, self.settings)
        self.stream: ReplicationStream | None = None
        #: The end of the last transaction handed out (where a reconnection resumes).
        self._handed = 0
        #: The last position the runtime acknowledged (confirmed again on a new
        #: replication connection).
        self._acked = 0

    @staticmethod
    def check(config: Mapping[str, Any]) -> None:
        """Raise :class:`~conn.errors.CheckFailed` (with the fix) unless the server can
        do logical replication."""
        admin = Admin(config, Settings.of(config))
        try:
            admin.check_wal_level()
        finally:
            admin.close()

    def changes(self, stream: StreamInfo, pos: Any | None,
                wait: float) -> Iterator[ChangeBatch]:
        """Stream the table's changes after ``pos``. A replication connection lost in
        the middle (the server restarted or crashed, the walsender terminated) is opened
        again with :class:`conn.reconnect.Reconnect`'s backoff, from the end of the last
        transaction handed out: the server sends again every transaction after it. So is
        a lost ordinary connection (the one that reads unchanged TOAST values): the
        changes it was completing are read again over the new replication connection."""
        import psycopg2
        from conn.errors import CheckFailed
        from conn.reconnect import Reconnect, reason

        self.admin.check_wal_level()
        self.admin.prepare(self.schema, [stream.name])
        where = f"source {self.instance!r}, table {self.schema}.{stream.name}"
        retry = Reconnect(f"{where}: PostgreSQL replication", log)
        self._handed = position_lsn(pos)
        try:
            while True:
                try:
                    yield from self._stream(stream, wait, where, retry)
                except (psycopg2.Error, CheckFailed, ConnectionLost) as exc:
                    from conn_postgres.common import redact
                    from conn_postgres.replication import lost

                    if isinstance(exc, psycopg2.Error) and not lost(exc):
                        raise
                    self.close()
                    yield from retry.pause(retry.failed(reason(CheckFailed(redact(exc)))),
                                           wait, position(self._handed))
        except SchemaChanged as exc:
            raise ConnError(f"{where}: {exc}; start the sync again") from None
        except psycopg2.Error as exc:
            from conn_postgres.common import redact

            raise ConnError(f"{where}: replication failed: {redact(exc).strip()}") from None
        finally:
            self.close()

    def _stream(self, stream: StreamInfo, wait: float, where: str,
                retry: Reconnect) -> Iterator[ChangeBatch]:
        """One replication connection's changes, after what was handed out."""
        rs = self.stream = ReplicationStream(self.config, self.settings, self.schema,
                                             stream.name)
        rs.start(self._handed, self.admin.confirmed_lsn())
        retry.connected()
        if self._acked:
            rs.confirm(self._acked)  # acknowledged while the connection was down
        dec = rs.decoder
        for buf in rs.buffers(wait):
            if dec.truncated:
                dec.truncated = False
                log.warning("%s was truncated: TRUNCATE is not streamed row by row; "
                            "run the sync once without --follow (mirror mode deletes "
                            "what left the table)", where)
            end = dec.commit_end
            if buf is None:
                self._handed = end
                yield ChangeBatch(None, position(end))
                continue
            # Converted (unchanged TOAST values read) before it counts as handed out: a
            # connection lost meanwhile makes the server send these changes again.
            batch = self._arrow(buf, stream, where)
            self._handed = end
            yield ChangeBatch(batch, position(end), pa.array(buf.commit_times, pa.float64()))

    def _arrow(self, buf: ChangeBuffer, stream: StreamInfo, where: str) -> pa.RecordBatch:
        """The buffer's changes as the stream's Arrow types (their text decoded for all
        the changes at once, then one conversion per column), with the operation
        column."""
        index = {c: i for i, c in enumerate(buf.columns)}
        missing = [f.name for f in stream.schema if f.name not in index]
        if missing:
            raise ConnError(f"{where}: replication carries no column(s) {missing}")
        try:
            texts = buf.text_columns()
        except ValueError as exc:
            raise ConnError(f"{where}: {exc}") from None
        if buf.unchanged:
            texts = self._fill_unchanged(buf, texts, stream, index)
        arrays = [pgtext.column(texts[index[f.name]], f, where) for f in stream.schema]
        arrays.append(pa.array(buf.operations, pa.string()))
        return pa.RecordBatch.from_arrays(
            arrays, schema=stream.schema.append(pa.field(OPERATION, pa.string())))

    def _fill_unchanged(self, buf: ChangeBuffer, texts: list[pa.Array], stream: StreamInfo,
                        index: dict[str, int]) -> list[pa.Array]:
        """Read the values an update did not carry (unchanged TOAST, without REPLICA
        IDENTITY FULL) from the table as it is now."""
        key = list(stream.primary_key)
        rows = sorted({r for r, _ in buf.unchanged})
        cols = sorted({buf.columns[c] for _, c in buf.unchanged})
        take = pa.array(rows, pa.int64())
        keys = list(zip(*(texts[index[k]].take(take).to_pylist() for k in key), strict=True))
        current = self.admin.fetch_text(self.schema, stream.name, key, cols, keys)
        missing = set(buf.unchanged)
        out = list(texts)
        values = {name: texts[index[name]].to_pylist() for name in cols}
        for r, k in zip(rows, keys, strict=True):
            found = current.get(k)
            if found is None:
                continue  # deleted since: a later change in the stream says so
            for name, value in zip(cols, found, strict=True):
                if (r, index[name]) in missing:
                    values[name][r] = value
        for name in cols:
            out[index[name]] = pa.array(values[name], texts[index[name]].type)
        return out

    def acknowledge(self, pos: Any) -> None:
        self._acked = max(self._acked, position_lsn(pos))
        if self.stream is not None:
            self.stream.confirm(self._acked)

    def lag(self) -> SourceLag:
        size, seconds = self.admin.lag()
        return SourceLag(bytes=size, seconds=seconds)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self.admin.close()

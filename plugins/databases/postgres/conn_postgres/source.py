"""PostgreSQL source: tables and queries streamed as Arrow batches through ADBC."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conn.errors import ConfigError, ConnError
from conn.source import Source, SourceState, StreamInfo
from conn.sql import (
    check_query_key,
    select_tables,
    source_properties,
    stream_options,
    with_bookmarks,
)
from conn.streaming import ChangeBatch, SourceLag, StreamingSource

from conn_postgres import common
from conn_postgres.common import quote_ident
from conn_postgres.replication import REPLICATION_PROPERTIES

if TYPE_CHECKING:
    import pyarrow as pa

    from conn_postgres.follow import Follower

_cursor_ids = itertools.count(1)

_TABLES_SQL = """
SELECT c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
ORDER BY c.relname
"""

_PKEYS_SQL = """
SELECT c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND i.indisprimary
ORDER BY c.relname, k.ord
"""


class PostgresSource(common.PostgresConnection, Source, StreamingSource):
    """Reads PostgreSQL tables, views and queries as Arrow record batches.

    Reads run inside one read-only transaction through a server-side cursor fetched
    ``batch_rows`` at a time, so memory stays bounded whatever the table's size. A stream
    with a ``cursor`` column reads incrementally: rows whose cursor is greater than the
    stored bookmark, in cursor order, with a bookmark after each batch.

    With ``replication`` settings a table can also be followed (``conn sync --follow``):
    its inserts, updates and deletes are decoded from a logical replication slot
    (``pgoutput``) by :mod:`conn_postgres.follow`.
    """

    name: ClassVar[str] = "postgres"
    description: ClassVar[str] = "PostgreSQL tables and queries (ADBC, Arrow-native)"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **common.CONNECTION_PROPERTIES,
            **source_properties(),
            "replication": REPLICATION_PROPERTIES,
        },
        "additionalProperties": False,
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        self.schema_name: str = self.config.get("schema", "public")
        #: The table being followed (``changes``), if any.
        self._follower: Follower | None = None
        #: Batches being read ahead on threads: closing stops them before the
        #: connection they read from is closed.
        self._reading: set[_ReadAhead] = set()

    # --- connection --------------------------------------------------------------------

    def _open_connection(self) -> Any:
        return common.connect(self.config)

    def _raw_schema(self, relation_sql: str) -> pa.Schema:
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "false"})
                cur.execute(f"SELECT * FROM {relation_sql} LIMIT 0")
                schema = cur.fetch_arrow_table().schema
            conn.rollback()
            return schema
        except Exception as exc:
            self.close()
            raise ConfigError(
                f"source {self.instance!r}: {common.error_message(exc)}") from None

    def close(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.close()
        # A read-ahead thread still using the connection (a run refused or failed
        # before it read its batches) is stopped first: closing the driver's connection
        # under it crashed the process (a segfault in the driver).
        for reading in list(self._reading):
            reading.stop()
        super().close()

    def check(self) -> None:
        """Connect; with ``replication`` settings also check that the server's
        ``wal_level`` allows logical replication (the error says how to fix it)."""
        super().check()
        if self.config.get("replication"):
            from conn_postgres.follow import Follower

            Follower.check(self.config)

    # --- change stream (conn_postgres.follow) ---------------------------------------------

    def changes(self, stream: StreamInfo, position: Any | None, *,
                wait: float) -> Iterator[ChangeBatch]:
        from conn_postgres.follow import Follower

        if stream.query:
            raise ConfigError("only tables can be followed, not a query stream")
        self._follower = Follower(self.config, self.schema_name, self.instance)
        yield from self._follower.changes(stream, position, wait)

    def acknowledge(self, position: Any) -> None:
        if self._follower is not None:
            self._follower.acknowledge(position)

    def lag(self) -> SourceLag:
        follower = self._follower
        return follower.lag() if follower is not None else SourceLag()

    @classmethod
    def position_key(cls, position: Any) -> Any:
        from conn_postgres.replication import position_lsn

        return position_lsn(position)

    # --- duties -------------------------------------------------------------------------

    def discover(self) -> list[StreamInfo]:
        tables = select_tables([r[0] for r in self._fetchall(_TABLES_SQL, (self.schema_name,))],
                               self.config.get("tables"), instance=self.instance,
                               where=f" in schema {self.schema_name!r}")
        pkeys: dict[str, list[str]] = {}
        for table, col in self._fetchall(_PKEYS_SQL, (self.schema_name,)):
            pkeys.setdefault(table, []).append(col)
        streams = []
        for table in tables:
            raw = self._raw_schema(common.qualified(self.schema_name, table))
            cursor, primary_key = stream_options(self.config, table, raw.names,
                                                 pkeys.get(table, ()))
            streams.append(StreamInfo(name=table, schema=common.normalize_schema(raw),
                                      primary_key=primary_key, cursor=cursor))
        return streams

    def query_stream(self, query: str, primary_key: tuple[str, ...]) -> StreamInfo:
        raw = self._raw_schema(f"({query}) AS q")
        check_query_key(primary_key, raw.names)
        return StreamInfo("query", common.normalize_schema(raw), tuple(primary_key),
                          query=query)

    def read_batches(self, stream: StreamInfo, state: Any | None,
                     batch_rows: int) -> Iterator[pa.RecordBatch | SourceState]:
        relation = (f"({stream.query}) AS q" if stream.query
                    else common.qualified(self.schema_name, stream.name))
        raw = self._raw_schema(relation)
        sql = f"SELECT {common.select_list(raw)} FROM {relation}"
        params: tuple[Any, ...] = ()
        if stream.cursor:
            cur_col = quote_ident(stream.cursor)
            if state is not None:
                field = raw.field(stream.cursor)
                typname = (field.metadata or {}).get(b"POSTGRESQL:type", b"text").decode()
                sql += f" WHERE {cur_col} > CAST(CAST($1 AS text) AS {quote_ident(typname)})"
                params = (str(state),)
            sql += f" ORDER BY {cur_col}"
        batches = self._stream(sql, params, stream.schema, batch_rows)
        if not stream.cursor:
            yield from batches
            return
        yield from with_bookmarks(batches, stream.cursor)

    def _stream(self, sql: str, params: tuple[Any, ...], schema: pa.Schema,
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Batches of ``sql`` conformed to ``schema``, fetched one batch ahead on a
        thread (the driver releases the GIL), so reading overlaps the consumer's work."""
        batches = (common.conform(b, schema) for b in self._fetch(sql, params, batch_rows))
        reading = _ReadAhead(batches)
        self._reading.add(reading)  # before its thread starts: close() must see it
        reading.start()
        try:
            yield from reading
        finally:
            reading.stop()
            self._reading.discard(reading)

    def _fetch(self, sql: str, params: tuple[Any, ...],
               batch_rows: int) -> Iterator[pa.RecordBatch]:
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                if not params:
                    # Binary COPY of the query, streamed by the driver in ~16 MB batches.
                    cur.execute(sql)
                    for batch in cur.fetch_record_batch():
                        for offset in range(0, batch.num_rows, batch_rows):
                            yield batch.slice(offset, batch_rows)
                else:
                    # COPY takes no parameters: a server-side cursor, FETCHed per batch.
                    name = quote_ident(f"conn_read_{next(_cursor_ids)}")
                    cur.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}",
                                parameters=params)
                    cur.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "false"})
                    while True:
                        cur.execute(f"FETCH FORWARD {int(batch_rows)} FROM {name}")
                        table = cur.fetch_arrow_table()
                        yield from table.to_batches()
                        if table.num_rows < batch_rows:
                            break
            conn.rollback()
        except GeneratorExit:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise ConnError(
                f"source {self.instance!r}: reading failed: {common.error_message(exc)}"
            ) from None


_DONE = object()


class _ReadAhead:
    """Runs ``items`` on a thread, at most one item ahead of the consumer (bounded
    memory). Errors surface in the consumer; :meth:`stop` (closing the consumer, or the
    source) stops the producer and waits for its thread."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._slot: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._produce, name="conn-postgres-read",
                                        daemon=True)

    def start(self) -> None:
        """Start reading on the thread."""
        self._worker.start()

    def _produce(self) -> None:
        slot, stop = self._slot, self._stop
        try:
            for item in self._items:
                while not stop.is_set():
                    try:
                        slot.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer
            slot.put((_DONE, exc))
            return
        finally:
            if stop.is_set():
                self._items.close()  # type: ignore[attr-defined]
        slot.put((_DONE, None))

    def __iter__(self) -> Iterator[Any]:
        while True:
            item, exc = self._slot.get()
            if item is _DONE:
                if exc is not None:
                    raise exc
                return
            yield item

    def stop(self) -> None:
        """Stop the producer and wait for its thread (not from the thread itself: the
        producer closing its reader closes the source, which stops this)."""
        self._stop.set()
        if threading.current_thread() is self._worker or not self._worker.is_alive():
            return
        while self._worker.is_alive():
            with contextlib.suppress(queue.Empty):
                self._slot.get(timeout=0.1)
        self._worker.join()
        # A consumer on another thread, still waiting, learns that the read stopped (it
        # must not take the stop for the end of the data).
        with contextlib.suppress(queue.Full):
            self._slot.put_nowait((_DONE, ConnError("the source was closed during a read")))


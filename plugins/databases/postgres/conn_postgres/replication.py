"""Following a PostgreSQL table through logical replication (``pgoutput``).

The replication connection is psycopg2's ``LogicalReplicationConnection`` (psycopg 3 has
no replication protocol support: https://github.com/psycopg/psycopg/issues/71). Set-up
statements run on an ordinary psycopg2 connection: the ``wal_level`` check, the
publication and the slot (created when missing and allowed), the slot's lag.

Flow control: the server keeps every WAL segment the slot has not confirmed, so the
position conn confirms (the flush LSN in standby status updates) only moves when the
runtime acknowledges it, which it does once the destination acknowledged every change
up to there and conn's state committed them. psycopg2 sends a status update (a
heartbeat) every ``status_interval`` seconds and answers the server's keepalives.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from conn.errors import CheckFailed, ConfigError, ConnError

from conn_postgres import common
from conn_postgres.pgoutput import ChangeBuffer, Decoder, lsn_int, lsn_text

log = logging.getLogger("conn_postgres.replication")

#: How long a start waits for a slot still held by a consumer that just died.
SLOT_BUSY_SECONDS = 30.0
#: Changes of committed transactions handed out at once at most (a micro-batch may
#: gather several of these).
CHUNK_ROWS = 5_000
#: Once changes are complete and nothing more is waiting on the socket, how long more
#: may gather before they are handed out. Converting a buffer costs about as much for
#: five changes as for five hundred: handed out as soon as the socket ran dry, a
#: follower at 1,000 changes a second converted hundreds of buffers a second and spent
#: 0.6 of a core on it (docs/performance.md, ``pg_stream``).
GATHER_SECONDS = 0.02

WAL_LEVEL_FIX = (
    "logical replication needs wal_level = logical, and this server runs with "
    "wal_level = {level}. Fix: run ALTER SYSTEM SET wal_level = logical; as a superuser "
    "and restart PostgreSQL (a reload is not enough); on a managed service set its "
    "parameter instead (e.g. rds.logical_replication = 1 on Amazon RDS, "
    "cloudsql.logical_decoding = on on Cloud SQL). See docs/realtime.md.")

#: The ``replication`` settings of the source's config schema.
REPLICATION_PROPERTIES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["slot"],
    "description": "stream changes with logical replication (conn sync --follow)",
    "properties": {
        "slot": {"type": "string", "pattern": "^[a-z0-9_]{1,63}$",
                 "description": "replication slot of this sync (one slot per followed "
                                "sync): lower-case letters, digits and _"},
        "publication": {"type": "string", "minLength": 1,
                        "description": "publication to decode (default: the slot's name)"},
        "create_publication": {"type": "boolean", "default": True,
                               "description": "create the publication FOR TABLE the "
                                              "streams when it does not exist"},
        "create_slot": {"type": "boolean", "default": True,
                        "description": "create the slot (pgoutput) when it does not exist"},
        "status_interval": {"type": "number", "minimum": 1, "default": 10,
                            "description": "seconds between standby status updates"},
    },
}


@dataclass(frozen=True)
class Settings:
    """The ``replication`` config, with its defaults."""

    slot: str
    publication: str
    create_publication: bool = True
    create_slot: bool = True
    status_interval: float = 10.0

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Settings:
        rep = config.get("replication")
        if not rep:
            raise ConfigError("this source has no 'replication' settings: add "
                              "replication: {slot: NAME} to follow it (see the plugin's "
                              "README)", path="config.replication")
        return cls(rep["slot"], rep.get("publication") or rep["slot"],
                   rep.get("create_publication", True), rep.get("create_slot", True),
                   float(rep.get("status_interval", 10)))


class ConnectionLost(ConnError):
    """An open connection to the server went away (a restart, a crash, a terminated
    session): a follower reconnects rather than ending."""


def lost(exc: Exception) -> bool:
    """Whether the psycopg2 error ``exc`` says the connection is gone rather than the
    server refusing a statement: a connection-level error, or one libpq raised itself
    without a SQLSTATE (e.g. "no COPY in progress" once a shutting-down server ended
    the replication stream)."""
    import psycopg2

    return (isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
            or (isinstance(exc, psycopg2.Error) and exc.pgcode is None))


def _connect(config: Mapping[str, Any], **kw: Any) -> Any:
    import psycopg2

    try:
        return psycopg2.connect(common.build_uri(config), **kw)
    except psycopg2.Error as exc:
        raise CheckFailed(f"cannot connect to PostgreSQL: {common.redact(exc)}") from None


class Admin:
    """Set-up and monitoring statements on an ordinary connection (thread-safe)."""

    def __init__(self, config: Mapping[str, Any], settings: Settings) -> None:
        self.config, self.settings = config, settings
        self._conn: Any = None
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg2

        with self._lock:
            if self._conn is None:
                self._conn = _connect(self.config)
                self._conn.autocommit = True
            try:
                with self._conn.cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description else []
            except psycopg2.Error as exc:
                gone = lost(exc) or bool(self._conn.closed)
                self.close_locked()
                text = f"PostgreSQL: {common.redact(exc).strip()}"
                raise (ConnectionLost(text) if gone else ConnError(text)) from None

    def close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def check_wal_level(self) -> None:
        """:class:`CheckFailed` explaining the fix unless ``wal_level`` is logical."""
        level = self._rows("SHOW wal_level")[0][0]
        if level != "logical":
            raise CheckFailed(WAL_LEVEL_FIX.format(level=level))

    def prepare(self, schema: str, tables: list[str]) -> None:
        """Make sure the publication covers ``tables`` and the slot exists."""
        s = self.settings
        pub = self._rows("SELECT puballtables FROM pg_publication WHERE pubname = %s",
                         (s.publication,))
        if not pub:
            if not s.create_publication:
                raise ConfigError(f"publication {s.publication!r} does not exist; create it "
                                  f"(CREATE PUBLICATION ... FOR TABLE ...) or set "
                                  f"create_publication: true",
                                  path="config.replication.publication")
            names = ", ".join(common.qualified(schema, t) for t in tables)
            self._rows(f"CREATE PUBLICATION {common.quote_ident(s.publication)} "
                       f"FOR TABLE {names}")
        elif not pub[0][0]:
            have = {r[0] for r in self._rows(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = %s "
                "AND schemaname = %s", (s.publication, schema))}
            missing = [t for t in tables if t not in have]
            if missing:
                raise ConfigError(f"publication {s.publication!r} does not include "
                                  f"{missing}: ALTER PUBLICATION "
                                  f"{common.quote_ident(s.publication)} ADD TABLE ...",
                                  path="config.replication.publication")
        slot = self._rows("SELECT plugin FROM pg_replication_slots WHERE slot_name = %s",
                          (s.slot,))
        if not slot:
            if not s.create_slot:
                raise ConfigError(f"replication slot {s.slot!r} does not exist; set "
                                  "create_slot: true or create it with "
                                  "pg_create_logical_replication_slot(name, 'pgoutput')",
                                  path="config.replication.slot")
            self._rows("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (s.slot,))
        elif slot[0][0] != "pgoutput":
            raise ConfigError(f"replication slot {s.slot!r} uses the {slot[0][0]!r} plugin; "
                              "conn reads 'pgoutput' slots", path="config.replication.slot")

    def confirmed_lsn(self) -> int:
        """The slot's confirmed flush position (0 when unknown)."""
        rows = self._rows("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                          "WHERE slot_name = %s", (self.settings.slot,))
        return lsn_int(rows[0][0]) if rows and rows[0][0] else 0

    def lag(self) -> tuple[int | None, float | None]:
        """WAL the slot retains beyond what conn confirmed (bytes), and the server's
        measure of the time from a WAL flush to conn's confirmation of it (seconds,
        ``pg_stat_replication.flush_lag``; 0 once caught up); None when unknown."""
        rows = self._rows(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, "
            "EXTRACT(EPOCH FROM r.flush_lag)::float8 FROM pg_replication_slots s "
            "LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid "
            "WHERE s.slot_name = %s", (self.settings.slot,))
        if not rows:
            return None, None
        size, seconds = rows[0]
        if seconds is None and size == 0:
            seconds = 0.0
        return (None if size is None else int(size)), seconds

    def fetch_text(self, schema: str, table: str, key: list[str], columns: list[str],
                   keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """Current text values of ``columns`` for rows with primary key ``keys`` (for
        unchanged TOAST values the server did not send)."""
        if not keys:
            return {}
        cols = ", ".join(f"{common.quote_ident(c)}::text" for c in [*key, *columns])
        cond = " AND ".join(f"{common.quote_ident(k)}::text = v.k{i}"
                            for i, k in enumerate(key))
        width = len(key)
        values = ", ".join("(" + ", ".join(["%s"] * width) + ")" for _ in keys)
        names = ", ".join(f"k{i}" for i in range(width))
        rows = self._rows(f"SELECT {cols} FROM {common.qualified(schema, table)} t "
                          f"JOIN (VALUES {values}) AS v({names}) ON {cond}",
                          tuple(x for k in keys for x in k))
        return {tuple(r[:width]): tuple(r[width:]) for r in rows}


class ReplicationStream:
    """One replication connection decoding one table's changes (see the module
    docstring). :meth:`buffers` yields decoded changes; :meth:`confirm` records the LSN
    to report as flushed."""

    def __init__(self, config: Mapping[str, Any], settings: Settings, schema: str,
                 table: str) -> None:
        self.config, self.settings = config, settings
        self.decoder = Decoder(schema, table)
        self._conn: Any = None
        self._cur: Any = None
        self.confirmed = 0

    def start(self, start_lsn: int, confirmed: int = 0) -> None:
        """Start streaming after ``start_lsn`` (0: after the slot's confirmed position,
        ``confirmed``, which the server uses anyway when it is later)."""
        import psycopg2
        from psycopg2.extras import LogicalReplicationConnection

        s = self.settings
        deadline = time.monotonic() + SLOT_BUSY_SECONDS
        while True:
            self._conn = _connect(self.config,
                                  connection_factory=LogicalReplicationConnection)
            self._cur = self._conn.cursor()
            try:
                self._cur.start_replication(
                    slot_name=s.slot, decode=False, start_lsn=start_lsn,
                    status_interval=s.status_interval,
                    options={"proto_version": "1", "publication_names": s.publication})
                break
            except psycopg2.errors.ObjectInUse:
                # The slot still belongs to the server process of a consumer that just
                # died (a crash, SIGKILL): the server lets it go once it notices.
                self.close()
                if time.monotonic() > deadline:
                    raise ConnError(f"replication slot {s.slot!r} is in use by another "
                                    f"consumer (waited {SLOT_BUSY_SECONDS:.0f} s); one slot "
                                    "serves one followed sync") from None
                time.sleep(0.5)
        self.decoder.commit_end = max(start_lsn, confirmed)

    def buffers(self, wait: float) -> Iterator[ChangeBuffer | None]:
        """Decoded changes of committed transactions as they come (at most
        :data:`CHUNK_ROWS` at once); None after ``wait`` seconds without any."""
        cur, dec = self._cur, self.decoder
        while True:
            deadline = time.monotonic() + wait
            hand_by = None  # when what is complete goes out, though more may come
            while True:
                msg = cur.read_message()
                if msg is not None:
                    dec.feed(msg.payload)
                    if dec.committed >= CHUNK_ROWS:
                        break
                    continue
                now = time.monotonic()
                if dec.committed and hand_by is None:
                    hand_by = now + GATHER_SECONDS
                left = (hand_by if hand_by is not None else deadline) - now
                if left <= 0:
                    break
                select.select([cur], [], [], left)
            yield dec.take()

    def confirm(self, lsn: int) -> None:
        """Report ``lsn`` as flushed (sent with the next status update)."""
        import psycopg2

        if lsn > self.confirmed and self._cur is not None:
            self.confirmed = lsn
            try:
                self._cur.send_feedback(write_lsn=lsn, flush_lsn=lsn)
            except psycopg2.Error:
                # The connection is gone: the reading side finds out and reconnects,
                # and the follower confirms this position on the new connection.
                log.debug("confirming %s: the replication connection is gone",
                          lsn_text(lsn))

    def close(self) -> None:
        """Send the last confirmed position at once, then close."""
        if self._cur is not None and self.confirmed:
            with contextlib.suppress(Exception):
                self._cur.send_feedback(write_lsn=self.confirmed, flush_lsn=self.confirmed,
                                        force=True)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = self._cur = None


def position(lsn: int) -> dict[str, str]:
    """A stored position: the end LSN of the last complete transaction."""
    return {"lsn": lsn_text(lsn)}


def position_lsn(pos: Any) -> int:
    """The LSN of a stored position (0 for none)."""
    if not pos:
        return 0
    try:
        return lsn_int(pos["lsn"])
    except (KeyError, TypeError, ValueError):
        raise ConnError(f"stored replication position {pos!r} is not "
                        "{'lsn': 'X/Y'}") from None

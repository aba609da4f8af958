"""The ``redis_streams`` source: a Redis stream read through a consumer group.

Each entry holds one JSON object in one of its fields (``field``, default ``data``),
read as a row of the columns the config declares (:mod:`conn.messages`). New entries
come from ``XREADGROUP ... >``; on every start the consumer's pending entries (delivered
before and never acknowledged: a crash) are read again first (``XREADGROUP ... 0``), and
entries another consumer left pending longer than ``claim_idle_seconds`` are claimed
(``XAUTOCLAIM``). An entry is ``XACK``'ed only when conn acknowledges a position covering
it. Positions are entry IDs (``"ms-seq"``), the largest delivered so far.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from conn.errors import CheckFailed, ConnError
from conn.messages import STREAM_SCHEMA, declared_stream, decode_json
from conn.source import Source, SourceState, StreamInfo
from conn.streaming import OPERATION, ChangeBatch, SourceLag, StreamingSource

if TYPE_CHECKING:
    import pyarrow as pa
    import redis
    from conn.reconnect import Reconnect

log = logging.getLogger("conn.sources.redis_streams")
DEFAULT_URL = "redis://127.0.0.1:6379/0"
Entry = tuple[bytes, dict[bytes, bytes]]

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["key", "group", "columns", "primary_key"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "secret": True, "default": DEFAULT_URL,
                "description": "redis://[:password@]host:port/db (secret when it holds a "
                               "password; use ${VAR})"},
        "key": {"type": "string", "minLength": 1, "description": "the stream's key"},
        "group": {"type": "string", "minLength": 1,
                  "description": "the consumer group (created, with the stream if missing)"},
        "consumer": {"type": "string", "minLength": 1, "default": "conn",
                     "description": "this reader's name in the group (keep it stable: "
                                    "its pending entries are re-read on restart)"},
        "deliver": {"enum": ["all", "new"], "default": "all",
                    "description": "where a new group starts: every entry in the stream "
                                   "(all) or those added after it (new)"},
        "field": {"type": "string", "minLength": 1, "default": "data",
                  "description": "the entry field holding the JSON object"},
        "name": {"type": "string", "minLength": 1,
                 "description": "the stream's name in conn (default: the key)"},
        "count": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000,
                  "description": "entries asked for per XREADGROUP"},
        "claim_idle_seconds": {"type": "number", "minimum": 0, "default": 60,
                               "description": "entries pending this long with another "
                                              "consumer of the group are claimed on start"},
        **STREAM_SCHEMA["properties"],
    },
}


def _id_key(entry_id: str | bytes) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamsSource(Source, StreamingSource):
    """Follows a Redis stream through a consumer group (README.md): one JSON object per
    entry, one row per entry, XACK'ed only after conn committed its effect."""

    name: ClassVar[str] = "redis_streams"
    description: ClassVar[str] = ("Redis Streams: a consumer group, one JSON object per "
                                  "entry, XACK after commit")
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA
    default_batch_rows: ClassVar[int] = 10_000

    def __init__(self, config: dict[str, Any] | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        cfg = self.config
        self.schema, self.key = declared_stream(cfg, path="config")
        self.skey: str = cfg.get("key", "")
        self.group: str = cfg.get("group", "")
        self.consumer: str = cfg.get("consumer", "conn")
        self.field = str(cfg.get("field", "data")).encode()
        self.stream_name: str = cfg.get("name") or self.skey
        self._client: redis.Redis | None = None
        # Entry IDs delivered and not yet acked, in delivery order, and per yielded
        # batch (position, number delivered up to its end).
        self._held: list[bytes] = []
        self._marks: list[tuple[tuple[int, int], int]] = []
        self._current: tuple[int, int] = (0, 0)
        self._acked: tuple[int, int] = (0, 0)

    # --- connection --------------------------------------------------------------------

    def _where(self) -> str:
        from urllib.parse import urlsplit

        u = urlsplit(str(self.config.get("url") or DEFAULT_URL))
        return f"{u.hostname or '127.0.0.1'}:{u.port or 6379}"

    def _redis(self) -> redis.Redis:
        import redis

        if self._client is None:
            self._client = redis.Redis.from_url(str(self.config.get("url") or DEFAULT_URL),
                                                socket_connect_timeout=3,
                                                socket_timeout=30,
                                                client_name=self._client_name())
        return self._client

    def _client_name(self) -> str:
        """The connection's name in ``CLIENT LIST`` (group and consumer: an operator
        can tell the follower's connection from others)."""
        return "conn:" + "".join(c if c.isalnum() or c in "-_.:" else "_"
                                 for c in f"{self.group}:{self.consumer}")

    def _call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        import redis.exceptions as rx

        try:
            return getattr(self._redis(), fn)(*args, **kwargs)
        except rx.AuthenticationError:
            raise CheckFailed(f"Redis at {self._where()} refused the credentials") from None
        except (rx.ConnectionError, rx.TimeoutError) as exc:
            raise CheckFailed(f"cannot reach Redis at {self._where()}: "
                              f"{type(exc).__name__}") from None
        except rx.ResponseError as exc:
            raise ConnError(f"source {self.instance!r}: Redis at {self._where()} answered "
                            f"{fn.upper()} on {self.skey!r} with an error: {exc}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- Source ------------------------------------------------------------------------

    def check(self) -> None:
        self._call("ping")
        kind = self._call("type", self.skey)
        if kind not in (b"stream", b"none"):
            raise CheckFailed(f"Redis key {self.skey!r} at {self._where()} holds a "
                              f"{kind.decode()}, not a stream")

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo(self.stream_name, self.schema, self.key)]

    def read_batches(self, stream: StreamInfo, state: Any | None, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        """A batch read: the stream's entries now (after the bookmark ``state``, an entry
        ID), by XRANGE; the group is not touched. Malformed entries are skipped with a
        warning here (a followed sync records them as rejections)."""
        start = f"({state}" if state else "-"
        while True:
            entries = self._call("xrange", self.skey, start, "+", count=batch_rows)
            if not entries:
                return
            rows, rejected = self._decode(entries)
            if rejected:
                log.warning("%s: %d malformed entr(ies) skipped in a batch read (first: %s)",
                            self.instance, len(rejected), rejected[0][1])
            yield rows.select(stream.schema.names)
            last = entries[-1][0].decode()
            yield SourceState(last)
            start = f"({last}"

    # --- StreamingSource ---------------------------------------------------------------

    def changes(self, stream: StreamInfo, position: Any | None, *,
                wait: float) -> Iterator[ChangeBatch]:
        """Entries of the group for this consumer: its pending ones first, then new
        ones. A connection lost in the middle (a Redis restart, ``CLIENT KILL``) is
        opened again with :class:`conn.reconnect.Reconnect`'s backoff; the consumer's
        pending entries are then read again from the start, as on a restart, so an entry
        whose delivery the lost connection swallowed is not skipped."""
        from conn.reconnect import Reconnect, reason

        self._ensure_group()
        retry = Reconnect(f"source {self.instance!r}: Redis at {self._where()}", log)
        stored = _id_key(position) if position else (0, 0)
        self._current = stored
        self._held, self._marks, self._acked = [], [], stored
        self._claim()
        try:
            while True:
                try:
                    yield from self._entries(stream, stored, wait, retry)
                except CheckFailed as exc:
                    yield from retry.pause(retry.failed(reason(exc)), wait,
                                           _id_text(self._current))
        finally:
            self._held, self._marks = [], []

    def _entries(self, stream: StreamInfo, stored: tuple[int, int], wait: float,
                 retry: Reconnect) -> Iterator[ChangeBatch]:
        """Read until the connection fails: first the entries delivered to this
        consumer before and never acked (a crash, or a reply the lost connection never
        brought), paged by ID from "0", then new ones (">")."""
        import pyarrow as pa

        count = int(self.config.get("count", 1000))
        pending_from: str | None = "0"
        if retry.lost:
            self._call("ping")
            retry.connected()
            self.acknowledge(_id_text(self._acked))  # an XACK the lost connection dropped
        held = set(self._held)
        while True:
            if pending_from is not None:
                entries, last = self._read(pending_from, count, None)
                if last is None:
                    pending_from = None
                    continue
                pending_from = last
                # Already handed out (waiting for their commit): not twice.
                entries = [e for e in self._settle(entries, stored) if e[0] not in held]
                if not entries:
                    continue
            else:
                entries, _ = self._read(">", count, max(1, int(wait * 1000)))
                if not entries:
                    yield ChangeBatch(None, _id_text(self._current))
                    continue
            ids = [e[0] for e in entries]
            self._held.extend(ids)
            self._current = max(self._current, *(_id_key(i) for i in ids))
            self._marks.append((self._current, len(self._held)))
            rows, rejected = self._decode(entries)
            ops = pa.array(["insert"] * rows.num_rows, pa.string())
            changes = rows.select(stream.schema.names).append_column(OPERATION, ops)
            times = pa.array([_id_key(i)[0] / 1000.0 for i in ids], pa.float64())
            yield ChangeBatch(changes, _id_text(self._current),
                              commit_times=None if rejected else times,
                              rejected=tuple(rejected))

    def acknowledge(self, position: Any) -> None:
        """XACK every entry of the batches ``position`` covers. With the connection
        down they stay held, and are XACK'ed by the next acknowledgement or on
        reconnection (pending entries are never lost: at worst read again on a
        restart and found at or before the stored position)."""
        key = _id_key(position)
        self._acked = max(self._acked, key)
        done = [n for pos, n in self._marks if pos <= key]
        if not done:
            return
        upto = done[-1]
        try:
            for i in range(0, upto, 10_000):
                self._call("xack", self.skey, self.group,
                           *self._held[i:min(upto, i + 10_000)])
        except CheckFailed as exc:
            log.debug("XACK on %s postponed: %s", self.skey, exc)
            return
        del self._held[:upto]
        self._marks = [(pos, n - upto) for pos, n in self._marks if n > upto]

    def lag(self) -> SourceLag:
        """Entries not yet delivered to the group (``lag``) plus delivered and not
        acknowledged (``pending``), from XINFO GROUPS."""
        for g in self._call("xinfo_groups", self.skey):
            if _text(g.get("name")) == self.group:
                lag = g.get("lag")
                return SourceLag(messages=int(g.get("pending") or 0) + int(lag or 0)
                                 if lag is not None else None)
        return SourceLag()

    @classmethod
    def position_key(cls, position: Any) -> Any:
        return None if position is None else _id_key(position)

    # --- helpers -----------------------------------------------------------------------

    def _ensure_group(self) -> None:
        import redis.exceptions as rx

        start = "$" if self.config.get("deliver") == "new" else "0"
        try:
            self._redis().xgroup_create(self.skey, self.group, id=start, mkstream=True)
        except rx.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise ConnError(f"source {self.instance!r}: cannot create group "
                                f"{self.group!r} on {self.skey!r}: {exc}") from None
        except (rx.ConnectionError, rx.TimeoutError) as exc:
            raise CheckFailed(f"cannot reach Redis at {self._where()}: "
                              f"{type(exc).__name__}") from None

    def _claim(self) -> None:
        """Entries another consumer of the group left pending for longer than
        ``claim_idle_seconds`` become this consumer's (they are then read with the rest
        of its pending entries)."""
        idle = int(float(self.config.get("claim_idle_seconds", 60)) * 1000)
        start = "0-0"
        while True:
            out = self._call("xautoclaim", self.skey, self.group, self.consumer, idle,
                             start_id=start, count=1000)
            if _text(out[0]) == "0-0":
                return
            start = out[0]

    def _read(self, from_id: str, count: int, block: int | None
              ) -> tuple[list[Entry], str | None]:
        """Entries from XREADGROUP and the ID of the last one returned (None: none)."""
        out = self._call("xreadgroup", self.group, self.consumer, {self.skey: from_id},
                         count=count, block=block)
        if not out or not out[0][1]:
            return [], None
        entries = out[0][1]
        last = entries[-1][0].decode()
        gone = [e[0] for e in entries if not e[1]]
        if gone:
            # Pending entries deleted from the stream (XDEL, trimming) come back empty:
            # nothing is left to deliver, so they are let go.
            self._call("xack", self.skey, self.group, *gone)
        return [e for e in entries if e[1]], last

    def _settle(self, entries: list[Entry], stored: tuple[int, int]) -> list[Entry]:
        """Pending entries at or before the stored position were committed by conn and
        not yet XACK'ed (a crash in between): ack them now instead of delivering them."""
        done = [e[0] for e in entries if _id_key(e[0]) <= stored]
        if done:
            self._call("xack", self.skey, self.group, *done)
        return [e for e in entries if _id_key(e[0]) > stored]

    def _decode(self, entries: list[Entry]) -> tuple[pa.RecordBatch, list[tuple[str, str]]]:
        ids = [f"{self.skey}#{e[0].decode()}" for e in entries]
        payloads = [e[1].get(self.field, b"") for e in entries]
        rows, rejected = decode_json(payloads, ids, self.schema)
        missing = {ids[i] for i, e in enumerate(entries) if self.field not in e[1]}
        if missing:
            why = f"entry has no field {self.field.decode()!r}"
            rejected = [(i, why if i in missing else r) for i, r in rejected]
        return rows, rejected


def _id_text(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

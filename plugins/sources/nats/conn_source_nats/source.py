"""The ``nats`` source: a NATS JetStream stream followed through a durable pull consumer.

Each message is one JSON object, read as a row of the columns the config declares
(:mod:`conn.messages`). Positions are stream sequences. The consumer acknowledges with
``AckPolicy.ALL``: when conn acknowledges a position, the last message of the batch that
carried it is acked, which acks every message delivered before it; nothing is acked
before. nats-py is asyncio-only: the source runs its own event loop on a private thread
and every call waits for its coroutine, so the runtime drives it synchronously.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from conn.errors import CheckFailed, ConnError
from conn.messages import STREAM_SCHEMA, declared_stream, decode_json
from conn.source import Source, SourceState, StreamInfo
from conn.streaming import OPERATION, ChangeBatch, SourceLag, StreamingSource

if TYPE_CHECKING:
    import pyarrow as pa
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = logging.getLogger("conn.sources.nats")
T = TypeVar("T")
CONNECT_TIMEOUT = 3

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["stream", "durable", "columns", "primary_key"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "default": "nats://127.0.0.1:4222",
                "description": "server URL (nats://host:port; several separated by commas)"},
        "user": {"type": "string", "description": "user name, when the server wants one"},
        "password": {"type": "string", "secret": True, "description": "password of user"},
        "token": {"type": "string", "secret": True, "description": "authentication token"},
        "stream": {"type": "string", "minLength": 1,
                   "description": "the JetStream stream to follow (it must exist)"},
        "subject": {"type": "string", "minLength": 1,
                    "description": "only messages of this subject (wildcards allowed); "
                                   "default: every subject of the stream"},
        "durable": {"type": "string", "minLength": 1, "pattern": "^[^.*> ]+$",
                    "description": "name of the durable pull consumer conn creates and "
                                   "owns on the stream (one per sync)"},
        "name": {"type": "string", "minLength": 1,
                 "description": "the stream's name in conn (the sync's 'stream:'); "
                                "default: the JetStream stream's name"},
        "deliver": {"enum": ["all", "new"], "default": "all",
                    "description": "where a new consumer starts: every stored message "
                                   "(all) or only those published after it (new)"},
        "ack_wait_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 30,
                             "description": "a message not acknowledged this long after "
                                            "delivery is redelivered (also after a crash)"},
        "max_ack_pending": {"type": "integer", "minimum": 1, "default": 20000,
                            "description": "messages delivered and not yet acknowledged "
                                           "at most (bounds memory)"},
        "fetch": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000,
                  "description": "messages asked for per pull request"},
        **STREAM_SCHEMA["properties"],
    },
}


class _Loop:
    """An asyncio loop on a daemon thread; :meth:`run` waits for a coroutine from any
    thread (the runtime calls the source from more than one)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="conn-nats-loop")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class NatsSource(Source, StreamingSource):
    """Follows a NATS JetStream stream (README.md): one JSON object per message, one row
    per message, acknowledged upstream only after conn committed its effect."""

    name: ClassVar[str] = "nats"
    description: ClassVar[str] = ("NATS JetStream: a durable pull consumer, one JSON "
                                  "object per message, acked after commit")
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA
    default_batch_rows: ClassVar[int] = 10_000

    def __init__(self, config: dict[str, Any] | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        cfg = self.config
        self.schema, self.key = declared_stream(cfg, path="config")
        self.js_stream: str = cfg.get("stream", "")
        self.stream_name: str = cfg.get("name") or self.js_stream
        self.durable: str = cfg.get("durable", "")
        self.subject: str | None = cfg.get("subject")
        self._loop: _Loop | None = None
        self._nc: Client | None = None
        # Messages delivered and not yet acked, in delivery order, and per yielded batch
        # (position, number of messages delivered up to its end).
        self._held: list[Msg] = []
        self._marks: list[tuple[int, int]] = []
        self._current = 0
        self._acked_pos: Any = None
        self._disconnected = False
        # Which connection is current: nats-py's callbacks of a connection given up
        # (closing it fires its disconnect callback) must not mark a newer one lost.
        self._generation = 0

    # --- connection --------------------------------------------------------------------

    def _where(self) -> str:
        """host:port of the servers, never the credentials a URL may carry."""
        urls = str(self.config.get("url") or "nats://127.0.0.1:4222").split(",")
        return ", ".join(f"{urlsplit(u.strip()).hostname}:{urlsplit(u.strip()).port or 4222}"
                         for u in urls)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30) -> T:
        if self._loop is None:
            self._loop = _Loop()
        return self._loop.run(coro, timeout)

    def _js(self) -> JetStreamContext:
        if self._nc is None or self._nc.is_closed:
            self._nc = self._run(self._connect())
        return self._nc.jetstream()

    async def _connect(self) -> Client:
        import nats

        cfg = self.config
        servers = [u.strip() for u in str(cfg.get("url") or "nats://127.0.0.1:4222").split(",")]
        generation = self._generation

        async def on_disconnect() -> None:
            # conn reconnects itself (changes()), binding the consumer again: a
            # connection nats-py restores on its own would keep acking with AckPolicy
            # ALL past messages the lost one swallowed.
            if generation == self._generation:
                self._disconnected = True

        try:
            connecting = nats.connect(
                servers, connect_timeout=CONNECT_TIMEOUT, max_reconnect_attempts=3,
                user=cfg.get("user"), password=cfg.get("password"), token=cfg.get("token"),
                name=f"conn {self.instance}", error_cb=self._on_error,
                disconnected_cb=on_disconnect)
            # Bounded: nats-py's first connect to a server that is down (a restart)
            # can retry well past connect_timeout.
            return await asyncio.wait_for(connecting, timeout=3 * CONNECT_TIMEOUT)
        except Exception as exc:  # NoServersError, OSError, auth errors
            raise CheckFailed(f"cannot reach NATS at {self._where()}: "
                              f"{type(exc).__name__}") from None

    async def _on_error(self, exc: Exception) -> None:
        # nats-py logs a traceback for each error unless given a callback: one line
        # (changes() logs the loss itself).
        log.debug("NATS at %s: %s", self._where(), type(exc).__name__)

    def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                self._run(self._nc.close(), timeout=5)
            except Exception as exc:  # closing never fails a run
                log.debug("closing NATS connection: %s", type(exc).__name__)
        self._nc = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    # --- Source ------------------------------------------------------------------------

    def check(self) -> None:
        import nats.errors
        import nats.js.errors

        js = self._js()
        try:
            self._run(js.account_info(), timeout=5)
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError,
                nats.errors.TimeoutError):
            raise CheckFailed(f"NATS at {self._where()} answers but JetStream is not "
                              "enabled: start nats-server with -js (or 'jetstream {}' in "
                              "its configuration)") from None
        except nats.js.errors.APIError as exc:
            raise CheckFailed(f"NATS at {self._where()}: JetStream refused: "
                              f"{exc.description}") from None
        self._stream_info()

    def _stream_info(self) -> Any:
        import nats.js.errors

        try:
            return self._run(self._js().stream_info(self.js_stream), timeout=10)
        except nats.js.errors.NotFoundError:
            raise CheckFailed(f"NATS at {self._where()} has no JetStream stream "
                              f"{self.js_stream!r} (create it, e.g. 'nats stream add "
                              f"{self.js_stream} --subjects ...')") from None

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo(self.stream_name, self.schema, self.key)]

    def read_batches(self, stream: StreamInfo, state: Any | None, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        """A batch read: every message stored now (after the bookmark ``state``, a
        stream sequence), through an ephemeral consumer that acknowledges nothing; the
        durable consumer is not touched. Malformed messages are skipped with a warning
        here (a followed sync records them as rejections)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        info = self._stream_info()
        last = int(info.state.last_seq)
        start = int(state or 0) + 1
        if start > last:
            return
        js = self._js()
        cfg = ConsumerConfig(ack_policy=AckPolicy.NONE,
                             deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                             filter_subject=self.subject,
                             inactive_threshold=60.0)
        sub = self._run(js.pull_subscribe(self.subject or ">", durable=None,
                                          stream=self.js_stream, config=cfg))
        try:
            seq = start - 1
            while seq < last:
                msgs = self._fetch(sub, min(batch_rows, 10_000), 2.0)
                if not msgs:
                    break  # the rest was filtered out or deleted
                seq = msgs[-1].metadata.sequence.stream
                rows, rejected = self._decode(msgs)
                if rejected:
                    log.warning("%s: %d malformed message(s) skipped in a batch read "
                                "(first: %s)", self.instance, len(rejected), rejected[0][1])
                yield rows.select(stream.schema.names)
                yield SourceState(seq)
                if msgs[-1].metadata.num_pending == 0:
                    break
        finally:
            self._run(sub.unsubscribe(), timeout=5)

    # --- StreamingSource ---------------------------------------------------------------

    def changes(self, stream: StreamInfo, position: Any | None, *,
                wait: float) -> Iterator[ChangeBatch]:
        """Pull from the durable consumer. A connection lost in the middle (a server
        restart, a killed connection) is opened again with
        :class:`conn.reconnect.Reconnect`'s backoff, and the consumer is bound again as
        on a start: from just after the last position conn acknowledged, so what was
        delivered and not acknowledged comes again at once and in order (AckPolicy ALL
        must never ack a message the lost connection swallowed)."""
        import nats.errors
        from conn.reconnect import Reconnect, reason

        retry = Reconnect(f"source {self.instance!r}: NATS at {self._where()}", log)
        sub, start = self._subscribe(position)
        self._held, self._marks = [], []
        self._current, self._acked_pos = start, position
        try:
            while True:
                try:
                    if sub is None:
                        self._drop_connection()
                        sub, start = self._subscribe(self._acked_pos)
                        retry.connected()
                        self._held, self._marks = [], []
                        self._current = max(self._current, start)
                    yield from self._pull(sub, stream, wait)
                except (ConnError, nats.errors.Error, OSError) as exc:
                    sub = None
                    yield from retry.pause(retry.failed(reason(exc)), wait, self._current)
        finally:
            self._held, self._marks = [], []
            if sub is not None:
                try:
                    self._run(sub.unsubscribe(), timeout=5)
                except Exception as exc:  # the connection may be gone already
                    log.debug("unsubscribing: %s", type(exc).__name__)

    def _pull(self, sub: Any, stream: StreamInfo, wait: float) -> Iterator[ChangeBatch]:
        """Fetch and yield until the connection fails."""
        import pyarrow as pa

        fetch = int(self.config.get("fetch", 1000))
        while True:
            msgs = self._fetch(sub, fetch, wait)
            if self._disconnected or self._nc is None or self._nc.is_closed:
                raise ConnError("disconnected")
            if not msgs:
                yield ChangeBatch(None, self._current)
                continue
            self._held.extend(msgs)
            seqs = [m.metadata.sequence.stream for m in msgs]
            # Redeliveries may come after later messages: positions never go back.
            self._current = max(self._current, *seqs)
            self._marks.append((self._current, len(self._held)))
            rows, rejected = self._decode(msgs)
            times = pa.array([m.metadata.timestamp.timestamp() for m in msgs
                              if m.metadata.timestamp is not None], pa.float64())
            ops = pa.array(["insert"] * rows.num_rows, pa.string())
            changes = rows.select(stream.schema.names).append_column(OPERATION, ops)
            kept = times if len(times) == len(msgs) and not rejected else None
            yield ChangeBatch(changes, self._current, commit_times=kept,
                              rejected=tuple(rejected))

    def _drop_connection(self) -> None:
        """Forget a failed connection (the next call opens a new one)."""
        nc, self._nc, self._disconnected = self._nc, None, False
        self._generation += 1
        if nc is not None and not nc.is_closed:
            try:
                self._run(nc.close(), timeout=5)
            except Exception as exc:  # it failed already
                log.debug("closing NATS connection: %s", type(exc).__name__)

    def acknowledge(self, position: Any) -> None:
        """Ack (AckAll) the last message of the latest batch ``position`` covers: the
        server forgets it and every message delivered before it. With the connection
        lost the ack is dropped: the consumer is bound again from just after
        ``position`` when the connection is back."""
        self._acked_pos = position
        done = [n for pos, n in self._marks if pos <= int(position)]
        if not done:
            return
        upto = done[-1]
        try:
            self._run(self._held[upto - 1].ack(), timeout=10)
        except Exception as exc:  # nats errors, a closed connection, a timeout
            log.debug("ack of %s dropped: %s", position, type(exc).__name__)
        del self._held[:upto]
        self._marks = [(pos, n - upto) for pos, n in self._marks if n > upto]

    def lag(self) -> SourceLag:
        """Messages of the stream the consumer has not delivered yet plus those
        delivered and not acknowledged (unknown while the connection is down: only the
        reading thread opens one)."""
        nc = self._nc
        if nc is None or nc.is_closed:
            return SourceLag()
        info = self._run(nc.jetstream().consumer_info(self.js_stream, self.durable),
                         timeout=5)
        return SourceLag(messages=int(info.num_pending or 0) + int(info.num_ack_pending or 0))

    @classmethod
    def position_key(cls, position: Any) -> Any:
        return None if position is None else int(position)

    # --- helpers -----------------------------------------------------------------------

    def _consumer_config(self, start: int | None) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        cfg = self.config
        if start is not None:
            deliver, opt = DeliverPolicy.BY_START_SEQUENCE, start
        else:
            deliver = DeliverPolicy.NEW if cfg.get("deliver") == "new" else DeliverPolicy.ALL
            opt = None
        return ConsumerConfig(
            durable_name=self.durable, ack_policy=AckPolicy.ALL, deliver_policy=deliver,
            opt_start_seq=opt, filter_subject=self.subject,
            ack_wait=float(cfg.get("ack_wait_seconds", 30)),
            max_ack_pending=int(cfg.get("max_ack_pending", 20000)))

    def _subscribe(self, position: Any | None) -> tuple[Any, int]:
        """Bind to the durable consumer, creating it if missing. When messages were
        delivered and not acknowledged (a crash), or conn's stored ``position`` is past
        the consumer's ack floor, the consumer is created again from just after the
        later of the two, so what is unacknowledged is redelivered now rather than after
        ``ack_wait``. Returns the subscription and the position it starts after."""
        import nats.js.errors

        self._stream_info()
        js = self._js()
        try:
            info = self._run(js.consumer_info(self.js_stream, self.durable), timeout=10)
        except nats.js.errors.NotFoundError:
            info = None
        stored = 0 if position is None else int(position)
        if info is None:
            start = stored + 1 if position is not None else None
            info = self._run(js.add_consumer(self.js_stream, self._consumer_config(start)))
        else:
            floor = int(info.ack_floor.stream_seq if info.ack_floor else 0)
            if info.num_ack_pending or stored > floor:
                self._run(js.delete_consumer(self.js_stream, self.durable))
                info = self._run(js.add_consumer(
                    self.js_stream, self._consumer_config(max(floor, stored) + 1)))
        # Heartbeats before the first message carry where the consumer stands.
        begin = max(int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0,
                    int(info.delivered.stream_seq or 0) if info.delivered
                    and not info.num_ack_pending else 0)
        sub = self._run(js.pull_subscribe_bind(self.durable, stream=self.js_stream))
        return sub, max(int(begin or 0), stored)

    def _fetch(self, sub: Any, n: int, wait: float) -> list[Msg]:
        """Up to ``n`` messages, waiting at most ``wait`` seconds for the first."""
        import nats.errors

        async def pull() -> list[Msg]:
            try:
                return list(await sub.fetch(n, timeout=max(wait, 0.01)))
            except (TimeoutError, nats.errors.TimeoutError):
                return []  # nothing new: a heartbeat

        try:
            return self._run(pull(), timeout=wait + 30)
        except (nats.errors.ConnectionClosedError, TimeoutError) as exc:
            raise ConnError(f"source {self.instance!r}: NATS at {self._where()} stopped "
                            f"answering ({type(exc).__name__})") from exc

    def _decode(self, msgs: list[Msg]) -> tuple[pa.RecordBatch, list[tuple[str, str]]]:
        ids = [f"{self.js_stream}#{m.metadata.sequence.stream}" for m in msgs]
        return decode_json([m.data for m in msgs], ids, self.schema)


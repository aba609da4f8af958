"""The ``rabbitmq`` source: a RabbitMQ queue consumed with manual acknowledgements.

Each message is one JSON object, read as a row of the columns the config declares
(:mod:`conn.messages`). pika's blocking connection is driven from the thread that
iterates :meth:`RabbitMQSource.changes` (and acknowledges: the same thread, by the
streaming contract). Delivery tags count per channel, so a position is ``[session,
tag]``: ``session`` (nanoseconds when the channel opened) grows from one connection to
the next, keeping positions ordered across restarts. The queue itself is the durable
cursor: a message is ``basic_ack``'ed (``multiple=True``) only when conn acknowledges a
position covering it; when the connection ends any other way, RabbitMQ requeues what is
unacknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from conn.errors import CheckFailed
from conn.messages import STREAM_SCHEMA, declared_stream, decode_json
from conn.source import Source, SourceState, StreamInfo
from conn.streaming import OPERATION, ChangeBatch, SourceLag, StreamingSource

if TYPE_CHECKING:
    import pika
    import pyarrow as pa
    from conn.reconnect import Reconnect

log = logging.getLogger("conn.sources.rabbitmq")
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: How often (seconds) the queue's depth is asked for, for lag().
LAG_EVERY = 1.0

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["queue", "columns", "primary_key"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "secret": True, "default": DEFAULT_URL,
                "description": "AMQP URL, amqp://user:password@host:port/vhost (secret: it "
                               "holds the password; use ${VAR})"},
        "queue": {"type": "string", "minLength": 1, "description": "the queue to consume"},
        "declare": {"type": "boolean", "default": False,
                    "description": "declare the queue (durable) if it does not exist; "
                                   "otherwise it must exist"},
        "name": {"type": "string", "minLength": 1,
                 "description": "the stream's name in conn (default: the queue's name)"},
        "prefetch": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5000,
                     "description": "messages delivered and not yet acknowledged at most "
                                    "(basic.qos; bounds memory)"},
        **STREAM_SCHEMA["properties"],
    },
}


class RabbitMQSource(Source, StreamingSource):
    """Follows a RabbitMQ queue (README.md): one JSON object per message, one row per
    message, acknowledged only after conn committed its effect."""

    name: ClassVar[str] = "rabbitmq"
    description: ClassVar[str] = ("RabbitMQ queue: manual acknowledgements, one JSON object "
                                  "per message, acked after commit")
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA
    default_batch_rows: ClassVar[int] = 10_000

    def __init__(self, config: dict[str, Any] | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        cfg = self.config
        self.schema, self.key = declared_stream(cfg, path="config")
        self.queue: str = cfg.get("queue", "")
        self.stream_name: str = cfg.get("name") or self.queue
        self._channel: Any = None
        self._session = 0
        self._acked = 0
        self._tag = 0
        self._lag = SourceLag()
        self._lock = threading.Lock()

    # --- connection --------------------------------------------------------------------

    def _params(self) -> pika.URLParameters:
        import pika

        params = pika.URLParameters(str(self.config.get("url") or DEFAULT_URL))
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.blocked_connection_timeout = 60
        # Named, so an operator can tell conn's connection apart (rabbitmqctl
        # list_connections user_provided_name).
        params.client_properties = {"connection_name": f"conn {self.instance} {self.queue}"}
        return params

    def _where(self) -> str:
        p = self._params()
        return f"{p.host}:{p.port}"

    def _connect(self) -> pika.BlockingConnection:
        import pika
        import pika.exceptions as pe

        params = self._params()
        try:
            return pika.BlockingConnection(params)
        except pe.ProbableAuthenticationError:
            raise CheckFailed(f"RabbitMQ at {self._where()} refused the credentials of user "
                              f"{params.credentials.username!r}") from None
        except pe.ProbableAccessDeniedError:
            raise CheckFailed(f"RabbitMQ at {self._where()}: no access to virtual host "
                              f"{params.virtual_host!r}") from None
        except pe.AMQPError as exc:
            raise CheckFailed(f"cannot reach RabbitMQ at {self._where()}: "
                              f"{type(exc).__name__}") from None

    def _open_queue(self, conn: pika.BlockingConnection) -> Any:
        """A channel on which the queue exists (declared when ``declare`` says so);
        returns (channel, messages ready)."""
        import pika.exceptions as pe

        channel = conn.channel()
        try:
            if self.config.get("declare"):
                ok = channel.queue_declare(self.queue, durable=True)
            else:
                ok = channel.queue_declare(self.queue, passive=True)
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise CheckFailed(f"RabbitMQ at {self._where()} has no queue {self.queue!r} "
                                  "(create it, or set declare: true)") from None
            raise CheckFailed(f"RabbitMQ at {self._where()} refused queue {self.queue!r}: "
                              f"{exc.reply_text}") from None
        return channel, int(ok.method.message_count)

    # --- Source ------------------------------------------------------------------------

    def check(self) -> None:
        conn = self._connect()
        try:
            self._open_queue(conn)
        finally:
            _close(conn)

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo(self.stream_name, self.schema, self.key)]

    def read_batches(self, stream: StreamInfo, state: Any | None, batch_rows: int
                     ) -> Iterator[pa.RecordBatch | SourceState]:
        """A batch read: the messages ready now, consumed without acknowledgement and
        requeued when the read ends (the queue is left as it was, but their redelivered
        flag is set). Malformed messages are skipped with a warning here (a followed
        sync records them as rejections)."""
        conn = self._connect()
        try:
            channel, ready = self._open_queue(conn)
            payloads: list[bytes] = []
            # basic.get, not a consumer: prefetch would stop a consumer at that many
            # unacknowledged messages, and a batch read acknowledges none.
            for _ in range(ready):
                method, _, body = channel.basic_get(self.queue, auto_ack=False)
                if method is None:
                    break
                payloads.append(body)
                if len(payloads) >= batch_rows:
                    yield self._rows(payloads, stream)
                    payloads = []
            if payloads:
                yield self._rows(payloads, stream)
        finally:
            _close(conn)  # unacknowledged: RabbitMQ requeues them

    def _rows(self, payloads: list[bytes], stream: StreamInfo) -> pa.RecordBatch:
        rows, rejected = decode_json(payloads, [str(i) for i in range(len(payloads))],
                                     self.schema)
        if rejected:
            log.warning("%s: %d malformed message(s) skipped in a batch read (first: %s)",
                        self.instance, len(rejected), rejected[0][1])
        return rows.select(stream.schema.names)

    # --- StreamingSource ---------------------------------------------------------------

    def changes(self, stream: StreamInfo, position: Any | None, *,
                wait: float) -> Iterator[ChangeBatch]:
        """Consume the queue; ``position`` is not needed to resume (the queue redelivers
        what was not acknowledged), only to keep positions ordered. A connection lost in
        the middle (a broker restart, a closed connection) is opened again with
        :class:`conn.reconnect.Reconnect`'s backoff; RabbitMQ has requeued what the lost
        one had not acknowledged, and delivers it again."""
        import pika.exceptions as pe
        from conn.reconnect import Reconnect, reason

        session = time.time_ns()
        if position is not None:
            session = max(session, int(position[0]) + 1)
        retry = Reconnect(f"source {self.instance!r}: RabbitMQ at {self._where()}", log)
        conn: Any = self._connect()  # at the start, unreachable is an error (conn check's)
        try:
            while True:
                try:
                    if conn is None:
                        conn = self._connect()
                    yield from self._consume(conn, stream, session, wait, retry)
                except (pe.AMQPError, CheckFailed) as exc:
                    if conn is not None:
                        _close(conn)
                        conn = None
                    self._channel = None
                    yield from retry.pause(retry.failed(reason(exc)), wait,
                                           [session, self._tag])
                    # Delivery tags count again from 1 on a new channel: a new session.
                    session, self._tag = max(time.time_ns(), session + 1), 0
        finally:
            self._channel = None
            if conn is not None:
                _close(conn)  # what was not acknowledged is requeued by RabbitMQ

    def _consume(self, conn: Any, stream: StreamInfo, session: int, wait: float,
                 retry: Reconnect) -> Iterator[ChangeBatch]:
        """One connection's consumption, until it fails."""
        import pika.exceptions as pe
        import pyarrow as pa

        channel, ready = self._open_queue(conn)
        channel.basic_qos(prefetch_count=int(self.config.get("prefetch", 5000)))
        retry.connected()
        self._channel, self._session, self._acked, self._tag = channel, session, 0, 0
        self._lag = SourceLag(messages=ready)
        consume = channel.consume(self.queue, inactivity_timeout=max(wait, 0.01))
        asked = time.monotonic()
        while True:
            payloads: list[bytes] = []
            ids: list[str] = []
            if self._channel is None:  # an acknowledgement found the connection gone
                raise pe.StreamLostError("the connection closed while acknowledging")
            method, props, body = next(consume)
            while method is not None:
                self._tag = method.delivery_tag
                payloads.append(body)
                ids.append(f"{self.queue}#{props.message_id or f'{session}:{self._tag}'}")
                if not channel.get_waiting_message_count():
                    break
                method, props, body = next(consume)
            if time.monotonic() - asked >= LAG_EVERY:
                asked = time.monotonic()
                self._update_lag(channel, self._tag)
            if not payloads:
                yield ChangeBatch(None, [session, self._tag])
                continue
            rows, rejected = decode_json(payloads, ids, self.schema)
            ops = pa.array(["insert"] * rows.num_rows, pa.string())
            changes = rows.select(stream.schema.names).append_column(OPERATION, ops)
            yield ChangeBatch(changes, [session, self._tag], rejected=tuple(rejected))

    def acknowledge(self, position: Any) -> None:
        """``basic_ack`` (multiple) up to the position's delivery tag: RabbitMQ forgets
        that message and every one delivered before it on this channel. A position of an
        earlier connection is ignored: RabbitMQ requeued its messages when it ended."""
        import pika.exceptions as pe

        session, tag = int(position[0]), int(position[1])
        if self._channel is None or session != self._session or tag <= self._acked:
            return
        try:
            self._channel.basic_ack(delivery_tag=tag, multiple=True)
        except pe.AMQPError:
            # The connection is gone: its messages are requeued; the reading loop
            # reconnects (it finds the channel dropped here).
            self._channel = None
            return
        self._acked = tag

    def _update_lag(self, channel: Any, tag: int) -> None:
        try:
            ready = int(channel.queue_declare(self.queue, passive=True).method.message_count)
        except Exception as exc:  # metrics never stop a stream
            log.debug("queue depth of %s: %s", self.queue, type(exc).__name__)
            return
        with self._lock:
            self._lag = SourceLag(messages=ready + max(0, tag - self._acked))

    def lag(self) -> SourceLag:
        """Messages ready in the queue plus those delivered and not acknowledged (as of
        the last second: pika's connection belongs to the reading thread)."""
        with self._lock:
            return self._lag

    @classmethod
    def position_key(cls, position: Any) -> Any:
        return None if position is None else (int(position[0]), int(position[1]))


def _close(conn: Any) -> None:
    try:
        if conn.is_open:
            conn.close()
    except Exception as exc:  # closing never fails a run
        log.debug("closing RabbitMQ connection: %s", type(exc).__name__)

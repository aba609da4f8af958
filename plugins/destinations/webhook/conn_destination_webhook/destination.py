"""The ``webhook`` destination: POSTs signed JSON batches to one URL.

Request body (``Content-Type: application/json``)::

    {"sync": "events_to_hook", "object": "events", "operation": "upsert",
     "match_key": "id", "records": [{"id": "1", ...}, ...]}

For ``delete`` and ``erase`` each record holds only the match key; for ``event``
(``mode: events``) each record is an event ``{"id", "name", "occurred_at", "person":
{match_key: value}, "properties": {...}}`` whose ``id`` is its idempotency key.
``erase`` is the erasure event of ``conn forget`` (``Capabilities.erasure``, declared
when ``erase_events: true``): the receiver must remove everything it holds about the
person with that key, and answer 2xx also when it holds nothing (already erased: a
second erase must not fail). Its idempotency keys are derived with the operation, so
they differ from a delete's of the same records, and stay the same on every re-send of
the same erasure. The README documents the event. Response convention (optional): a
2xx reply may list per-record failures as ``{"errors": [{"index": 3, "message": "..."}]}``
(``index`` into ``records``; ``"retryable": true`` to have the row retried next run).
400, 413 and 422 refuse the whole batch: it is split in halves down to single records so
that only the bad ones are rejected. 408, 429 and 5xx are retried with backoff honouring
``Retry-After``; 401, 403, 404 and other 4xx leave the batch pending with the error.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from conn import secrets
from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.errors import CheckFailed, ConnError
from conn.http import LazyClient, direct_transport
from conn.http.config import (
    client_from_config,
    concurrency_schema,
    flat_retry_policy,
    rate_limit_from_config,
    timeout_schema,
)
from conn.pyvalues import UTC_ZONES

if TYPE_CHECKING:
    from conn.http import HttpClient

log = logging.getLogger("conn.destination.webhook")

SPLIT_STATUSES = (400, 413, 422)
#: The erasure objects declare (Capabilities.erasure): an event the receiver implements.
ERASURE = "webhook erase event (operation \"erase\")"
DEFAULT_OBJECTS = ("events", "records")

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": "^https?://",
                "description": "Endpoint receiving the batches (POST)."},
        "secret": {"type": "string", "secret": True, "minLength": 8,
                   "description": "HMAC-SHA256 signing secret (plain, or whsec_<base64>). "
                                  "Use an ${ENV} reference."},
        "signature_header": {"type": "string", "default": "webhook-signature"},
        "timestamp_header": {"type": "string", "default": "webhook-timestamp"},
        "id_header": {"type": "string", "default": "webhook-id"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "Extra headers sent with every request."},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 100},
        "concurrency": concurrency_schema(default=4, maximum=64),
        "timeout": timeout_schema(default=30),
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 6},
        "retry_base_delay": {"type": "number", "exclusiveMinimum": 0, "default": 0.5,
                             "description": "First backoff cap in seconds (doubles per "
                                            "attempt, full jitter)."},
        "max_retry_wait": {"type": "number", "minimum": 0, "default": 300,
                           "description": "Most seconds one request may spend waiting "
                                          "between retries."},
        "rate_limit": {
            "type": "object", "required": ["requests"], "additionalProperties": False,
            "properties": {
                "requests": {"type": "integer", "minimum": 1},
                "per_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 1},
                "burst": {"type": "integer", "minimum": 1},
                "daily": {"type": "integer", "minimum": 1},
            },
        },
        "identifiers": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                        "default": ["id"],
                        "description": "Default match-key fields of every object."},
        "objects": {
            "type": "array", "minItems": 1, "default": list(DEFAULT_OBJECTS),
            "items": {"oneOf": [
                {"type": "string"},
                {"type": "object", "required": ["name"], "additionalProperties": False,
                 "properties": {"name": {"type": "string"},
                                "identifiers": {"type": "array", "minItems": 1,
                                                "items": {"type": "string"}},
                                "description": {"type": "string"}}},
            ]},
        },
        "erase_events": {"type": "boolean", "default": False,
                         "description": "The receiver implements the `erase` event (see "
                                        "the README): conn forget sends it. Off by "
                                        "default: conn forget sends `delete`, which every "
                                        "receiver handles."},
        "check": {"enum": ["ping", "none"], "default": "ping",
                  "description": "`ping` POSTs an empty batch (operation `ping`)."},
    },
}


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


def encode(payload: Mapping[str, Any], *, finite: bool = False,
           plain_datetimes: bool = False) -> bytes:
    """The exact body bytes sent (and signed). JSON has no NaN or Infinity: rows holding
    them (or dates outside the years 0001-9999) are rejected by the mapper with a reason
    before they reach a destination (``conn.mapping.carry``); should one get here anyway,
    encoding fails (the rows stay pending) instead of sending another value.

    ``finite=True`` says the caller checked that no float in ``payload`` is NaN or
    infinite (:func:`finite_floats`): the body is then written by orjson, which would
    write such a float as ``null``; the same JSON values as the standard library's
    (non-ASCII characters as UTF-8 rather than ``\\u`` escapes), at a fraction of the
    CPU (a follower's requests: docs/performance.md, ``pg_stream``). What orjson refuses
    (a time with a time zone, keys that are not strings, integers beyond 64 bits, lone
    surrogates) is written by the standard library as before.

    Dates, times and timestamps are written as ``isoformat()`` writes them.
    ``plain_datetimes=True`` says the caller checked that they are only dates and
    timestamps without a zone or in UTC (:func:`plain_datetimes`): orjson then writes
    them itself, the same text without a call back into Python per value. Otherwise each
    goes through ``isoformat()``: orjson 3.13 writes ``time(0, 0, 0, 10000)`` as
    ``00:00:00.10000`` and rounds an offset of ``+05:30:15`` to ``+05:30``."""
    if finite:
        try:
            return orjson.dumps(payload, default=_default,
                                option=0 if plain_datetimes else orjson.OPT_PASSTHROUGH_DATETIME)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(payload, default=_default, allow_nan=False,
                      separators=(",", ":")).encode()


def plain_datetimes(schema: pa.Schema) -> bool:
    """Whether every date or time value of a batch of ``schema`` is a date or a timestamp
    without a zone or in UTC, to any depth: the values orjson writes as ``isoformat()``
    does (see :func:`encode`). No times of day, no other zones, no nanoseconds."""
    return all(_plain_type(t) for t in schema.types)


def _plain_type(t: pa.DataType) -> bool:
    if pa.types.is_time(t):
        return False
    if pa.types.is_timestamp(t):
        return t.unit != "ns" and (t.tz is None or t.tz in UTC_ZONES)
    if pa.types.is_dictionary(t):
        return _plain_type(t.value_type)
    if isinstance(t, pa.ExtensionType):
        return _plain_type(t.storage_type)
    return all(_plain_type(t.field(i).type) for i in range(t.num_fields))


def finite_floats(batch: pa.RecordBatch) -> bool:
    """Whether every float of ``batch`` is finite (nulls count as finite), checked per
    column by Arrow; False also when floats sit inside nested values (not checked)."""
    for i, t in enumerate(batch.schema.types):  # the columns read only when floats
        if pa.types.is_floating(t):
            col = batch.column(i)
            if col.null_count < len(col) and not pc.all(pc.is_finite(col)).as_py():
                return False
        elif pa.types.is_nested(t) and _has_floats(t):
            return False
    return True


def _has_floats(t: pa.DataType) -> bool:
    if pa.types.is_floating(t):
        return True
    return any(_has_floats(t.field(i).type) for i in range(t.num_fields))


class WebhookDestination(LazyClient, Destination):
    """POST signed JSON batches of records to a URL (see the module docstring)."""

    name: ClassVar[str] = "webhook"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("url",)
    description: ClassVar[str] = (
        "POST signed JSON batches to any HTTP endpoint (HMAC-SHA256 signature)")
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        c = self.config
        self.url: str = c.get("url", "")
        self.secret: str | None = c.get("secret")
        self.id_header = c.get("id_header", "webhook-id")
        self.timestamp_header = c.get("timestamp_header", "webhook-timestamp")
        self.signature_header = c.get("signature_header", "webhook-signature")
        self.headers: dict[str, str] = dict(c.get("headers") or {})
        self.batch_size = int(c.get("batch_size", 100))
        self.concurrency = int(c.get("concurrency", 4))
        self.rate_limit = rate_limit_from_config(c.get("rate_limit"))
        if self.secret:
            secrets.register(self.secret)
        from conn.http.dry_run import SENSITIVE_HEADERS

        for k, v in self.headers.items():
            if SENSITIVE_HEADERS.search(k):
                secrets.register(v)
        #: Optional overrides for tests (``clock``, ``sleep``, ``seed``, ``transport``...).
        self.client_options: dict[str, Any] = {}

    # -- plumbing --

    def make_client(self) -> HttpClient:
        """The HTTP client all workers share (one limiter), made on first use."""
        auth = None
        if self.secret:
            from conn_destination_webhook.auth import WebhookSigner

            auth = WebhookSigner(self.secret, id_header=self.id_header,
                                 timestamp_header=self.timestamp_header,
                                 signature_header=self.signature_header)
        return client_from_config(
            self.config, auth=auth,
            headers={"Content-Type": "application/json", **self.headers}, timeout=30,
            retry=flat_retry_policy(self.config, max_retry_wait=300),
            rate_limit=self.rate_limit, name=self.instance,
            max_connections=max(4, self.concurrency * 2),
            # Many small POSTs to one origin: http.client's connections cost a third of
            # httpcore's CPU per request (docs/performance.md, pg_stream).
            **{"transport": direct_transport(self.url), **self.client_options})

    def payload(self, request: WriteRequest, records: Sequence[Mapping[str, Any]] | None = None,
                keys: Sequence[str] | None = None) -> dict[str, Any]:
        """The JSON document for ``records`` (default: the whole request) and their
        idempotency keys (one per record)."""
        if records is None:
            records, keys = _records(request), _keys(request)
        doc = {"sync": request.sync, "object": request.object.name,
               "operation": request.operation, "match_key": request.match_key,
               "records": list(records)}
        if keys is not None:
            doc["idempotency_keys"] = list(keys)
        return doc

    # -- duties --

    def objects(self) -> list[ObjectInfo]:
        """The configured objects (default ``events`` and ``records``); any fields."""
        caps = Capabilities(batch_size=self.batch_size, concurrency=self.concurrency,
                            rate_limit=self.rate_limit, supports_delete=True,
                            modes=frozenset({"upsert", "insert", "update", "mirror", "append",
                                             "events"}),
                            erasure=ERASURE if self.config.get("erase_events", False) else "")
        default_ids = tuple(self.config.get("identifiers") or ("id",))
        out = []
        for item in self.config.get("objects") or DEFAULT_OBJECTS:
            spec = {"name": item} if isinstance(item, str) else dict(item)
            ids = tuple(spec.get("identifiers") or default_ids)
            fields = {"type": "object", "properties": {i: {} for i in ids},
                      "additionalProperties": True}
            out.append(ObjectInfo(spec["name"], fields, ids, caps,
                                  description=spec.get("description", "")))
        return out

    def check(self) -> None:
        """POST an empty ``ping`` batch, one attempt (a check should answer at once);
        any 2xx passes."""
        if self.config.get("check", "ping") == "none":
            return
        from conn.errors import RetryLater
        from conn.http import NO_RETRY, HttpClient

        body = encode({"sync": None, "object": None, "operation": "ping", "records": []})
        try:
            resp = self.client.post(self.url, content=body, retry=NO_RETRY,
                                    headers={self.id_header: f"msg_{uuid.uuid4().hex}"})
            HttpClient.raise_for_status(resp)
        except (RetryLater, ConnError) as exc:
            raise CheckFailed(f"webhook {self.instance!r}: {getattr(exc, 'reason', exc)}") \
                from None

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """POST the records; split on whole-batch refusal; map per-record errors."""
        from conn.http import write_with_split

        keys = _keys(request)
        padded: Sequence[str | None] = keys or [None] * len(request)
        pairs = list(zip(_records(request), padded, strict=True))
        # Once per request, not per chunk sent.
        options = {"finite": finite_floats(request.records),
                   "plain_datetimes": plain_datetimes(request.records.schema)}
        return write_with_split(pairs, lambda part: self._send(request, part, **options))

    def _send(self, request: WriteRequest,
              pairs: Sequence[tuple[Mapping[str, Any], str | None]],
              finite: bool = False, plain_datetimes: bool = False) -> WriteResult:
        from conn.http import BatchRejected, HttpClient, body_excerpt
        from conn.idempotency import request_key

        records = [r for r, _ in pairs]
        keys = [k for _, k in pairs]
        present = [k for k in keys if k is not None]
        known = len(present) == len(keys)
        body = encode(self.payload(request, records, present if known else None),
                      finite=finite, plain_datetimes=plain_datetimes)
        # Derived from the records' idempotency keys: the same on every retry of this
        # payload, in later runs and after a crash, while the records are unchanged.
        msg_id = (f"msg_{request_key([str(k) for k in keys])}" if known
                  else f"msg_{uuid.uuid4().hex}")
        resp = self.client.post(self.url, content=body, headers={self.id_header: msg_id})
        status = resp.status_code
        if 200 <= status < 300:
            return self._record_errors(resp, len(records))
        if status in SPLIT_STATUSES:
            raise BatchRejected(f"HTTP {status}: {body_excerpt(resp)}".rstrip(": "),
                                status=status)
        HttpClient.raise_for_status(resp)  # 401, 403, 404...: rows stay pending
        raise ConnError(f"webhook {self.instance!r}: unexpected HTTP {status}")

    @staticmethod
    def _record_errors(resp: Any, n: int) -> WriteResult:
        try:
            doc = resp.json() if resp.content else None
        except ValueError:
            doc = None
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if not errors:
            return WriteResult()
        rejected = []
        for e in errors:
            idx = e.get("index") if isinstance(e, dict) else None
            if not isinstance(idx, int) or not 0 <= idx < n:
                raise ConnError(f"receiver reported an error for record index {idx!r} of a "
                                f"batch of {n}; see the response convention in the README")
            msg = e.get("message") or e.get("error") or "rejected by the receiver"
            rejected.append(Rejection(idx, secrets.redact(msg), bool(e.get("retryable"))))
        return WriteResult(rejected=rejected)

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """The POSTs :meth:`write_batch` would send, signature and secrets masked."""
        from conn.http import chunked
        from conn.http.dry_run import describe
        from conn.idempotency import request_key

        headers = {"Content-Type": "application/json", **self.headers}
        if self.secret:
            headers[self.timestamp_header] = "<unix time of each attempt>"
            headers[self.signature_header] = secrets.MASK
        records, keys = _records(request), _keys(request)
        out = []
        for offset, chunk in chunked(records, self.batch_size):
            part = None if keys is None else keys[offset:offset + len(chunk)]
            msg = (f"msg_{request_key(part)}" if part is not None
                   else "<new id per request, kept across retries>")
            out.append(describe("POST", self.url, headers={**headers, self.id_header: msg},
                                json=json.loads(encode(self.payload(request, chunk, part)))))
        return out


def _keys(request: WriteRequest) -> list[str] | None:
    """The records' idempotency keys (None for a request built without them)."""
    return request.idempotency_keys() if request.basis is not None else None


def _records(request: WriteRequest) -> list[dict[str, Any]]:
    """What ``records`` holds: the mapped records, or for ``event`` the events
    (``{"id", "name", "occurred_at", "person", "properties"}``, see the README)."""
    if request.operation == "event":
        from conn.events import envelopes

        return envelopes(request)
    return request.to_pylist()

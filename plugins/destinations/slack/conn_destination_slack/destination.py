"""The ``slack`` destination: each event (``mode: events``, e.g. a trigger firing) or each
row (``mode: append``) posted as one Slack message.

Two ways in, one per destination:

- ``webhook_url``: an incoming webhook. ``POST <url>`` with ``{"text", "blocks"}``; Slack
  answers ``200`` with the text ``ok``, or an error string with a status
  (https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks):
  ``400 invalid_payload`` / ``user_not_found`` (this message: rejected with the reason),
  ``403 action_prohibited``, ``404 channel_not_found``, ``410 channel_is_archived`` (the
  webhook itself: the run stops, rows stay pending), ``500 rollup_error`` (retried).
- ``bot_token`` + ``channel``: the Web API's ``POST /api/chat.postMessage`` with a bot
  token (``chat:write``). Slack answers ``200`` with ``{"ok": true, "channel", "ts"}`` or
  ``{"ok": false, "error": "..."}`` (https://docs.slack.dev/reference/methods/chat.postMessage);
  an error about the message (``no_text``, ``msg_too_long``, ``invalid_blocks``...)
  rejects that event, one about the token or the configured channel stops the run, one
  about a channel taken from the record (``channel_field``) rejects that event.

``429`` is retried after ``Retry-After`` seconds (https://docs.slack.dev/apis/web-api/rate-limits),
as are 5xx and Slack's transient errors; the client keeps to ``rate_limit`` (default one
message per second: Slack allows about one per second per channel).

Slack has no idempotency key: a message whose answer was lost (a timeout, a cut
connection, a crash before conn recorded the answer) is posted again. Messages are sent
one at a time and each batch's answers are recorded before the next batch, so a crash
re-posts at most ``batch_size`` messages (see the README).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from conn import secrets
from conn.destination import Capabilities, Destination, ObjectInfo, WriteRequest, WriteResult
from conn.errors import CheckFailed, ConfigError, ConnError, RetryLater
from conn.http import LazyClient
from conn.http.config import client_from_config, flat_retry_policy, timeout_schema

from conn_destination_slack import template

if TYPE_CHECKING:
    import httpx
    from conn.http import HttpClient

log = logging.getLogger("conn.destination.slack")

DEFAULT_API_URL = "https://slack.com/api"
#: chat.postMessage errors about the message itself: that event is rejected.
MESSAGE_ERRORS = frozenset({
    "no_text", "msg_too_long", "invalid_blocks", "invalid_blocks_format",
    "too_many_attachments", "invalid_attachments", "invalid_metadata_format",
    "invalid_metadata_schema", "metadata_too_large", "message_limit_exceeded",
    "invalid_arguments", "messages_tab_disabled", "slack_connect_file_link_sharing_blocked",
})
#: Errors about the channel: reject the event when the record named the channel,
#: otherwise the configuration is wrong and the run stops.
CHANNEL_ERRORS = frozenset({
    "channel_not_found", "is_archived", "not_in_channel", "restricted_action",
    "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel", "cannot_reply_to_message",
    "team_access_not_granted", "ekm_access_denied",
})
#: Transient chat.postMessage errors (answered 200): retried like a 5xx.
TRANSIENT_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error",
                              "service_unavailable", "request_timeout", "fatal_error"})
#: Incoming-webhook statuses about this one message (the rest is about the webhook).
WEBHOOK_MESSAGE_STATUSES = frozenset({400})

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "oneOf": [{"required": ["webhook_url"], "not": {"required": ["bot_token"]}},
              {"required": ["bot_token"], "not": {"required": ["webhook_url"]}}],
    "properties": {
        "webhook_url": {"type": "string", "pattern": "^https?://", "secret": True,
                        "description": "Incoming webhook URL (it is the credential: use an "
                                       "${ENV} reference)."},
        "bot_token": {"type": "string", "secret": True, "minLength": 8,
                      "description": "Bot token (xoxb-...) with chat:write, for "
                                     "chat.postMessage. Use an ${ENV} reference."},
        "channel": {"type": "string", "minLength": 1,
                    "description": "With bot_token: channel id (C0123...) or name."},
        "channel_field": {"type": "string", "minLength": 1,
                          "description": "With bot_token: a mapped field naming each "
                                         "message's channel (else `channel`)."},
        "api_url": {"type": "string", "pattern": "^https?://", "default": DEFAULT_API_URL,
                    "description": "Web API root (proxies, tests)."},
        "text": {"type": "string", "minLength": 1,
                 "description": "Message template: {field} is a mapped field's value "
                                "(escaped), {event}, {event_id}, {occurred_at} the event's; "
                                "{{ and }} are braces. Default: the event name and every "
                                "field."},
        "blocks": {"type": "array", "items": {"type": "object"},
                   "description": "Block Kit blocks; every string in them is a template."},
        "metadata": {"type": "boolean", "default": False,
                     "description": "With bot_token: attach the event id as message "
                                    "metadata (event_type conn_event)."},
        "unfurl_links": {"type": "boolean",
                         "description": "Sent as it is when set (Slack's default otherwise)."},
        "identifiers": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                        "default": ["id"],
                        "description": "Fields that may be a sync's match key."},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10,
                       "description": "Messages between two recorded acknowledgements: "
                                      "at most this many are posted again after a crash."},
        "rate_limit": {
            "type": "object", "required": ["requests"], "additionalProperties": False,
            "default": {"requests": 1, "per_seconds": 1},
            "properties": {"requests": {"type": "integer", "minimum": 1},
                           "per_seconds": {"type": "number", "exclusiveMinimum": 0,
                                           "default": 1},
                           "burst": {"type": "integer", "minimum": 1}},
        },
        "timeout": timeout_schema(default=30),
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 6},
        "retry_base_delay": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
        "max_retry_wait": {"type": "number", "minimum": 0, "default": 300},
        "check": {"enum": ["auto", "none"], "default": "auto",
                  "description": "`auto`: auth.test with a bot token; an empty payload "
                                 "to the webhook (Slack refuses it without posting)."},
    },
}


def _redact_http_logs() -> None:
    """httpx logs every request's full URL (INFO, logger ``httpx``), and a webhook's URL
    is its credential: mask registered secrets at that logger itself, so that no handler
    (not only those conn's CLI filters) sees the URL."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, secrets.RedactingFilter) for f in logger.filters):
            logger.addFilter(secrets.RedactingFilter())


def _problem(resp: httpx.Response) -> str:
    """Slack's answer as a short redacted reason."""
    from conn.http import body_excerpt

    return secrets.redact(f"HTTP {resp.status_code}: {body_excerpt(resp, 200)}".rstrip(": "))


def _api_error(resp: httpx.Response) -> str | None:
    """The ``error`` of a Web API answer (None when ``ok``)."""
    try:
        doc = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code} without JSON"
    if isinstance(doc, dict) and doc.get("ok") is True:
        return None
    return str(doc.get("error") if isinstance(doc, dict) else doc) or "unknown_error"


class SlackDestination(LazyClient, Destination):
    """Post events as Slack messages (see the module docstring and the README)."""

    name: ClassVar[str] = "slack"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("webhook_url", "api_url", "channel")
    description: ClassVar[str] = (
        "Post each event as a Slack message (incoming webhook or chat.postMessage)")
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        c = self.config
        self.webhook_url: str = c.get("webhook_url", "")
        self.bot_token: str = c.get("bot_token", "")
        self.channel: str = c.get("channel", "")
        self.channel_field: str = c.get("channel_field", "")
        if self.webhook_url:
            path = urlsplit(self.webhook_url).path
            secrets.register(self.webhook_url, *([path] if len(path) >= 8 else []))
            _redact_http_logs()
        if self.bot_token:
            secrets.register(self.bot_token)
            if not (self.channel or self.channel_field):
                raise ConfigError("slack: bot_token needs `channel` (or `channel_field`)",
                                  path="config.channel")
        self.text: str | None = c.get("text")
        self.blocks: list[Any] | None = c.get("blocks")
        try:
            template.parse(self.text or "")
            template.check_json(self.blocks)
        except template.TemplateError as exc:
            raise ConfigError(f"slack: {exc}", path="config.text") from None
        self.batch_size = int(c.get("batch_size", 10))
        rate = c.get("rate_limit") or {"requests": 1, "per_seconds": 1}
        from conn.destination import RateLimit

        self.rate_limit = RateLimit(int(rate["requests"]), float(rate.get("per_seconds", 1)),
                                    rate.get("burst"))
        #: Optional overrides for tests (``clock``, ``sleep``, ``seed``, ``transport``...).
        self.client_options: dict[str, Any] = {}

    # -- plumbing --

    @property
    def api_url(self) -> str:
        """The Web API root (``https://slack.com/api`` unless configured)."""
        return str(self.config.get("api_url") or DEFAULT_API_URL).rstrip("/")

    def make_client(self) -> HttpClient:
        """The HTTP client (one limiter for every message), made on first use."""
        from conn.http import BearerToken

        auth = BearerToken(self.bot_token) if self.bot_token else None
        return client_from_config(
            self.config, auth=auth,
            headers={"Content-Type": "application/json; charset=utf-8"}, timeout=30,
            retry=flat_retry_policy(self.config, max_retry_wait=300),
            rate_limit=self.rate_limit, name=self.instance, max_connections=2,
            **self.client_options)

    @staticmethod
    def _retryable(resp: httpx.Response) -> bool:
        """429, 5xx, and a Web API ``ok: false`` with a transient error."""
        if resp.status_code == 429 or (resp.status_code >= 500
                                       and resp.status_code not in (501, 505)):
            return True
        if resp.status_code == 200 and resp.headers.get("content-type", "").startswith(
                "application/json"):
            return _api_error(resp) in TRANSIENT_ERRORS
        return False

    # -- duties --

    def objects(self) -> list[ObjectInfo]:
        """One object, ``messages``: any fields; events or appended rows."""
        caps = Capabilities(batch_size=self.batch_size, concurrency=1,
                            rate_limit=self.rate_limit, supports_delete=False,
                            modes=frozenset({"events", "append"}))
        ids = tuple(self.config.get("identifiers") or ("id",))
        fields = {"type": "object", "properties": {i: {} for i in ids},
                  "additionalProperties": True}
        where = "a webhook's channel" if self.webhook_url else (
            f"channel {self.channel}" if self.channel else "each record's channel")
        return [ObjectInfo("messages", fields, ids, caps,
                           description=f"Slack messages posted to {where}")]

    def check(self) -> None:
        """Bot token: ``auth.test``. Webhook: POST ``{}``, which Slack refuses without
        posting (``400``: the webhook exists); ``403``/``404``/``410`` fail the check.
        One attempt each (a check should answer at once)."""
        if self.config.get("check", "auto") == "none":
            return
        from conn.http import NO_RETRY

        try:
            if self.bot_token:
                resp = self.client.post(f"{self.api_url}/auth.test", retry=NO_RETRY)
                err = _api_error(resp) if resp.status_code == 200 else _problem(resp)
                if err:
                    raise CheckFailed(f"slack {self.instance!r}: auth.test: {err}")
                return
            resp = self.client.post(self.webhook_url, json={}, retry=NO_RETRY)
            if resp.status_code not in (200, 400):
                raise CheckFailed(f"slack {self.instance!r}: webhook: {_problem(resp)}")
        except RetryLater as exc:
            raise CheckFailed(f"slack {self.instance!r}: {getattr(exc, 'reason', exc)}") \
                from None

    # -- messages --

    def messages(self, request: WriteRequest) -> list[tuple[dict[str, Any] | None, str]]:
        """Per record: the JSON body to post, or None and the reason it cannot be built
        (a template field the record lacks, no channel)."""
        if request.operation == "event":
            from conn.events import envelopes

            rows = []
            for env in envelopes(request):
                values = {"event": env["name"], "event_id": env["id"],
                          "occurred_at": env["occurred_at"], **env["person"],
                          **env["properties"]}
                rows.append((values, env["id"]))
        else:
            rows = [(rec, None) for rec in request.to_pylist()]
        return [self._body(values, event_id, request.operation == "event")
                for values, event_id in rows]

    def _body(self, values: Mapping[str, Any], event_id: str | None,
              is_event: bool) -> tuple[dict[str, Any] | None, str]:
        try:
            text = (template.render(self.text, values) if self.text
                    else _default_text(values, is_event))
            body: dict[str, Any] = {"text": text}
            if self.blocks:
                body["blocks"] = template.render_json(self.blocks, values)
        except template.MissingField as exc:
            return None, (f"the message template names field {exc.args[0]!r}, which this "
                          "record does not have (map it, or change `text`/`blocks`)")
        if self.config.get("unfurl_links") is not None:
            body["unfurl_links"] = bool(self.config.get("unfurl_links"))
        if self.bot_token:
            channel = values.get(self.channel_field) if self.channel_field else None
            channel = str(channel) if channel not in (None, "") else self.channel
            if not channel:
                return None, f"no channel: field {self.channel_field!r} is empty"
            body = {"channel": channel, **body}
            if self.config.get("metadata") and event_id is not None:
                body["metadata"] = {"event_type": "conn_event",
                                    "event_payload": {"event_id": event_id}}
        return body, ""

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Post one message per record, in order (see the module docstring)."""
        if request.operation in ("delete", "erase"):
            raise ConnError("slack: messages cannot be deleted (declare mode events or "
                            "append)")
        from conn.http import write_each

        bodies = self.messages(request)
        return write_each(bodies, self._post)

    def _post(self, item: tuple[dict[str, Any] | None, str]) -> str | None:
        """Post one message: None when Slack took it, a reason when Slack refused this
        message; raise when the webhook, token or configured channel is refused (the
        record and those after it stay pending)."""
        body, reason = item
        if body is None:
            return reason
        if self.bot_token:
            return self._post_api(body)
        resp = self.client.post(self.webhook_url, json=body, retry_on=self._retryable)
        if resp.status_code == 200:
            return None
        if resp.status_code in WEBHOOK_MESSAGE_STATUSES:
            return f"Slack refused the message ({_problem(resp)})"
        raise ConnError(f"slack {self.instance!r}: the incoming webhook was refused "
                        f"({_problem(resp)}); check that the webhook and its channel "
                        "still exist (a new webhook URL may be needed)")

    def _post_api(self, body: dict[str, Any]) -> str | None:
        resp = self.client.post(f"{self.api_url}/chat.postMessage", json=body,
                                retry_on=self._retryable)
        if resp.status_code != 200:
            raise ConnError(f"slack {self.instance!r}: chat.postMessage: {_problem(resp)}")
        err = _api_error(resp)
        if err is None:
            return None
        if err in MESSAGE_ERRORS:
            return f"Slack refused the message: {err}"
        if err in CHANNEL_ERRORS and self.channel_field:
            return f"Slack refused channel {body['channel']!r}: {err}"
        if err in TRANSIENT_ERRORS:
            raise RetryLater(f"slack {self.instance!r}: chat.postMessage kept answering "
                             f"{err}; the message stays pending")
        raise ConnError(f"slack {self.instance!r}: chat.postMessage: {err} (check the bot "
                        "token, its chat:write scope and that the bot is in the channel)")

    # -- dry run --

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """The POSTs :meth:`write_batch` would send (webhook path and token masked)."""
        from conn.http.dry_run import describe

        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.bot_token:
            headers["Authorization"] = f"Bearer {secrets.MASK}"
        url = f"{self.api_url}/chat.postMessage" if self.bot_token else self.webhook_url
        out = []
        for body, reason in self.messages(request):
            if body is None:
                out.append({"skipped": reason})
            else:
                out.append(describe("POST", url, json=body, headers=headers))
        return out


def _default_text(values: Mapping[str, Any], is_event: bool) -> str:
    """``*event*`` then one ``field: value`` line per field (values escaped)."""
    skip = {"event", "event_id", "occurred_at"} if is_event else set()
    lines = [f"*{template.escape(template.as_text(values.get('event')))}*"] if is_event else []
    lines += [f"{template.escape(k)}: {template.escape(template.as_text(v))}"
              for k, v in values.items() if k not in skip]
    return "\n".join(lines)

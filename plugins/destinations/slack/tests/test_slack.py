"""The slack destination against conn's fault server emulating Slack (``conftest``):
messages, per-event rejections, 429 with Retry-After, 5xx, refused webhooks and tokens,
channel per record, dry run, check, secrets."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conn.errors import CheckFailed, ConfigError, RetryLater
from conn.testing.harness import event_batch, make_request, write_records
from conn.testing.http import FaultServer, Reply
from conn_destination_slack import plugin
from conn_destination_slack.destination import SlackDestination

from .conftest import CHANNELS, HOOK_PATH, TOKEN

WAITS: list[float] = []


def hook(srv: FaultServer, **config: Any) -> SlackDestination:
    cfg = {"webhook_url": srv.url + HOOK_PATH, "identifiers": ["customer_id"],
           "rate_limit": {"requests": 1000}, "retry_base_delay": 0.01, **config}
    SlackDestination.validate_config(cfg)
    d = SlackDestination(cfg, instance="alerts")
    d.client_options = {"seed": 1, "sleep": WAITS.append}
    return d


def bot(srv: FaultServer, **config: Any) -> SlackDestination:
    cfg = {"bot_token": TOKEN, "api_url": srv.url + "/api", "channel": CHANNELS[0],
           "identifiers": ["customer_id"], "rate_limit": {"requests": 1000},
           "retry_base_delay": 0.01, **config}
    SlackDestination.validate_config(cfg)
    d = SlackDestination(cfg, instance="ops")
    d.client_options = {"seed": 1, "sleep": WAITS.append}
    return d


def events(n: int, **extra: Any) -> Any:
    rows = [{"customer_id": f"cu{i}", "health": 30 + i, "plan": "pro", **extra}
            for i in range(n)]
    return event_batch(rows, name="health_dropped", occurred_at="2026-12-01T10:00:00+00:00")


TEXT = "{event} id={customer_id}: health {health} ({plan})"


@pytest.fixture(autouse=True)
def _waits() -> None:
    WAITS.clear()


def test_registration_schema_and_defaults() -> None:
    got: list[type] = []
    plugin.register_destinations(got.append)
    assert got == [SlackDestination]
    props = SlackDestination.config_schema["properties"]
    assert props["webhook_url"]["secret"] and props["bot_token"]["secret"]
    for bad in ({}, {"webhook_url": "https://h/x", "bot_token": "xoxb-123456789"},
                {"webhook_url": "hooks.slack.com/x"}):
        with pytest.raises(ConfigError):
            SlackDestination.validate_config(bad)
    with pytest.raises(ConfigError, match="channel"):
        SlackDestination({"bot_token": "xoxb-123456789"})
    with pytest.raises(ConfigError, match="brace"):
        SlackDestination({"webhook_url": "https://h/services/x", "text": "health {"})
    (obj,) = SlackDestination({"webhook_url": "https://h/services/x"}).objects()
    caps = obj.capabilities
    assert obj.name == "messages" and caps.operations() == {"event", "append"}
    # Slack's documented pace: about one message per second per channel.
    assert caps.rate_limit is not None and caps.rate_limit.requests == 1
    assert caps.rate_limit.per_seconds == 1 and caps.concurrency == 1


def test_webhook_posts_each_event_in_order_escaped(slack: FaultServer) -> None:
    d = hook(slack, text=TEXT)
    res = write_records(d, "messages", events(3, plan="<!channel> & co"), operation="event")
    assert res.rejected == [] and res.pending == []
    texts = [b["text"] for b in slack.posted]  # type: ignore[attr-defined]
    assert texts == [f"health_dropped id=cu{i}: health {30 + i} (&lt;!channel&gt; &amp; co)"
                     for i in range(3)]
    slack.assert_exactly_once(f"cu{i}:" for i in range(3))


def test_default_text_and_blocks(slack: FaultServer) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*{event}* {customer_id}"}}]
    d = hook(slack, blocks=blocks)
    res = write_records(d, "messages", events(1), operation="event")
    assert res.rejected == [] and res.pending == []
    (body,) = slack.posted  # type: ignore[attr-defined]
    assert body["text"] == "*health_dropped*\ncustomer_id: cu0\nhealth: 30\nplan: pro"
    assert body["blocks"] == [{"type": "section", "text": {"type": "mrkdwn",
                                                           "text": "*health_dropped* cu0"}}]


def test_missing_field_and_refused_message_reject_only_that_event(slack: FaultServer) -> None:
    d = hook(slack, text="{event} id={customer_id} {plan}")
    batch = events(3).to_pylist()
    batch[1]["plan"] = "REFUSED"
    res = write_records(d, "messages", event_batch(batch, name="health_dropped"),
                        operation="event")
    assert [r.index for r in res.rejected] == [1] and res.pending == []
    assert "invalid_payload" in res.rejected[0].reason and not res.rejected[0].retryable
    d2 = hook(slack, text="{event} {missing}")
    res = write_records(d2, "messages", events(2), operation="event")
    assert [r.index for r in res.rejected] == [0, 1]
    assert "'missing'" in res.rejected[0].reason


def test_429_waits_retry_after_then_posts(slack: FaultServer) -> None:
    slack.configure(schedule=[Reply(429, body=b"", headers={"Retry-After": "3"}), None,
                              Reply(429, body=b"", headers={"Retry-After": "1"})])
    d = hook(slack, text=TEXT)
    res = write_records(d, "messages", events(3), operation="event")
    assert res.rejected == [] and res.pending == []
    # Each retry waits what Retry-After says (WAITS also holds the rate limiter's pauses,
    # which keep every request of the client behind the same wait).
    assert d.client.stats["retries"] == 2 and d.client.stats["throttled"] == 2
    assert 3 <= WAITS[0] < 3.5 and any(1 <= w < 1.5 for w in WAITS[1:])
    slack.assert_exactly_once(f"cu{i}:" for i in range(3))


def test_5xx_retried_and_persistent_failure_leaves_rest_pending(slack: FaultServer) -> None:
    slack.configure(schedule=[Reply(500, body=b"rollup_error"), None])
    d = hook(slack, text=TEXT)
    res = write_records(d, "messages", events(2), operation="event")
    assert res.rejected == [] and res.pending == [] and d.client.stats["retries"] == 1
    slack.reset()
    slack.posted.clear()  # type: ignore[attr-defined]
    slack.configure(schedule=[None] + [Reply(503, body=b"rollup_error")] * 10)
    d = hook(slack, text=TEXT, max_attempts=3)
    res = write_records(d, "messages", events(4), operation="event")
    assert res.rejected == [] and res.pending == [1, 2, 3]
    assert isinstance(res.error, RetryLater)
    assert len(slack.posted) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("status,error", [(403, "action_prohibited"),
                                          (404, "channel_not_found"),
                                          (410, "channel_is_archived")])
def test_refused_webhook_stops_the_run_pending(slack: FaultServer, status: int,
                                               error: str) -> None:
    slack.configure(schedule=[None, Reply(status, body=error.encode())])
    d = hook(slack, text=TEXT)
    res = write_records(d, "messages", events(3), operation="event")
    assert res.rejected == [] and res.pending == [1, 2]
    assert error in str(res.error) and str(status) in str(res.error)
    assert "hooksecret" not in str(res.error) + repr(res.error)


def test_chat_post_message(slack: FaultServer) -> None:
    d = bot(slack, text=TEXT, metadata=True)
    req = make_request(d, "messages", events(2), "event")
    res = d.write(req)
    assert res.rejected == [] and res.pending == []
    ids = req.idempotency_keys()
    sent = slack.posted  # type: ignore[attr-defined]
    assert [b["channel"] for b in sent] == [CHANNELS[0]] * 2
    assert [b["metadata"] for b in sent] == [
        {"event_type": "conn_event", "event_payload": {"event_id": i}} for i in ids]
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in slack.requests)


def test_chat_post_message_errors(slack: FaultServer) -> None:
    rows = events(3).to_pylist()
    rows[1]["plan"] = "REFUSED"
    res = write_records(bot(slack, text=TEXT), "messages",
                        event_batch(rows, name="x"), operation="event")
    assert [r.index for r in res.rejected] == [1] and "msg_too_long" in res.rejected[0].reason
    # The configured channel is wrong: a configuration error, every event pending.
    res = write_records(bot(slack, text=TEXT, channel="C0GONE"), "messages", events(2),
                        operation="event")
    assert res.pending == [0, 1] and "channel_not_found" in str(res.error)
    # A bad token: pending, the token never shown.
    res = write_records(bot(slack, text=TEXT, bot_token="xoxb-wrong-token-000"),
                        "messages", events(2), operation="event")
    assert res.pending == [0, 1] and "invalid_auth" in str(res.error)
    assert "xoxb-wrong" not in str(res.error)


def test_channel_per_record_rejects_only_that_event(slack: FaultServer) -> None:
    rows = events(3).to_pylist()
    for r, ch in zip(rows, [CHANNELS[1], "C0GONE", None], strict=True):
        r["room"] = ch
    d = bot(slack, text=TEXT, channel_field="room")
    res = write_records(d, "messages", event_batch(rows, name="x"), operation="event")
    assert [r.index for r in res.rejected] == [1] and res.pending == []
    assert "channel_not_found" in res.rejected[0].reason
    assert [b["channel"] for b in slack.posted] == [CHANNELS[1], CHANNELS[0]]  # type: ignore[attr-defined]


def test_api_ratelimited_and_429_are_retried(slack: FaultServer) -> None:
    slack.configure(schedule=[
        Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "2"}),
        Reply(200, json={"ok": False, "error": "internal_error"},
              headers={"Content-Type": "application/json"})])
    d = bot(slack, text=TEXT)
    res = write_records(d, "messages", events(1), operation="event")
    assert res.rejected == [] and res.pending == []
    assert d.client.stats["retries"] == 2 and WAITS[0] >= 2
    assert len(slack.posted) == 1  # type: ignore[attr-defined]


def test_resent_events_have_identical_bodies(slack: FaultServer) -> None:
    d = bot(slack, text=TEXT, metadata=True)
    for _ in range(2):
        assert d.write(make_request(d, "messages", events(2), "event")).pending == []
    bodies = [r.body for r in slack.requests]
    assert bodies[:2] == bodies[2:]


def test_append_mode_posts_rows(slack: FaultServer) -> None:
    d = hook(slack, text="new signup id={customer_id}")
    res = write_records(d, "messages", [{"customer_id": "a"}, {"customer_id": "b"}],
                        operation="append")
    assert res.pending == [] and [b["text"] for b in slack.posted] == [  # type: ignore[attr-defined]
        "new signup id=a", "new signup id=b"]


def test_check(slack: FaultServer) -> None:
    hook(slack).check()  # an empty payload: Slack refuses it (400) without posting
    assert slack.posted == [] and slack.requests[-1].json == {}  # type: ignore[attr-defined]
    bad = hook(slack, webhook_url=slack.url + "/services/T0/B0/revoked")
    with pytest.raises(CheckFailed, match="404"):
        bad.check()
    bot(slack).check()
    with pytest.raises(CheckFailed, match="invalid_auth"):
        bot(slack, bot_token="xoxb-wrong-token-000").check()


def test_dry_run_masks_the_webhook_and_token(slack: FaultServer) -> None:
    d = hook(slack, text=TEXT)
    out = d.describe_requests(make_request(d, "messages", events(2), "event", dry_run=True))
    assert len(out) == 2 and out[0]["json"]["text"].startswith("health_dropped id=cu0")
    assert "hooksecret" not in str(out) and slack.requests == []
    b = bot(slack, text=TEXT)
    out = b.describe_requests(make_request(b, "messages", events(1), "event", dry_run=True))
    assert out[0]["url"].endswith("/api/chat.postMessage") and TOKEN not in str(out)


def test_webhook_url_never_logged(slack: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    slack.configure(schedule=[Reply(500, body=b"rollup_error")] * 2)
    d = hook(slack, text=TEXT, max_attempts=2)
    res = write_records(d, "messages", events(1), operation="event")
    assert res.pending == [0]
    text = caplog.text + str(res.error) + repr(res.error)
    assert "rollup_error" in caplog.text and "hooksecret" not in text

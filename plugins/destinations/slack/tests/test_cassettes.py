"""Replays of the vcrpy cassettes in ``cassettes/``.

They were written by hand from Slack's documented requests and answers (each cassette
names its page), **not recorded live**, and each starts with the toolkit's marker line
(``conn.testing.http.DOC_CASSETTE_MARKER``). They replay with ``record_mode="none"`` and
match every request body, so no test reaches the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conn.testing.harness import event_batch, write_records
from conn.testing.http import assert_documented_cassette
from conn_destination_slack.destination import SlackDestination

from .conftest import CASSETTES, TOKEN

HOOK = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
TEXT = "{event} id={customer_id}: health {health} ({plan})"
WAITS: list[float] = []


def make(**config: Any) -> SlackDestination:
    cfg = {"text": TEXT, "identifiers": ["customer_id"], "rate_limit": {"requests": 100},
           **config}
    SlackDestination.validate_config(cfg)
    d = SlackDestination(cfg, instance="slack")
    d.client_options = {"sleep": WAITS.append, "seed": 1}
    return d


def events(n: int, plans: list[str] | None = None, rooms: list[Any] | None = None) -> Any:
    rows = [{"customer_id": f"cu{i}", "health": 30 + i,
             "plan": (plans or ["pro"] * n)[i]} for i in range(n)]
    if rooms is not None:
        for r, room in zip(rows, rooms, strict=True):
            r["room"] = room
    return event_batch(rows, name="health_dropped")


def test_every_cassette_is_marked_as_documented() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) >= 6
    for f in files:
        assert_documented_cassette(f)
        assert TOKEN not in f.read_text()


def test_webhook_post(cassette: Callable[..., Any]) -> None:
    with cassette("webhook_post") as cas:
        res = write_records(make(webhook_url=HOOK), "messages", events(2), operation="event")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_webhook_errors(cassette: Callable[..., Any]) -> None:
    with cassette("webhook_errors") as cas:
        res = write_records(make(webhook_url=HOOK), "messages",
                            events(3, plans=["pro", "REFUSED", "pro"]), operation="event")
    assert cas.all_played
    assert [r.index for r in res.rejected] == [1] and "invalid_payload" in res.rejected[0].reason
    assert res.pending == [2] and "channel_is_archived" in str(res.error)
    assert "XXXXXXXX" not in str(res.error)


def test_webhook_rate_limit(cassette: Callable[..., Any]) -> None:
    WAITS.clear()
    d = make(webhook_url=HOOK)
    with cassette("webhook_rate_limit") as cas:
        res = write_records(d, "messages", events(1), operation="event")
    assert cas.all_played and res.pending == [] and WAITS and WAITS[0] >= 30


def test_api_post_message(cassette: Callable[..., Any]) -> None:
    d = make(bot_token=TOKEN, channel="C123ABC456", metadata=True)
    with cassette("api_post_message", ignore_body_keys=["event_id"]) as cas:
        res = write_records(d, "messages", events(1), operation="event")
    assert cas.all_played and res.rejected == [] and res.pending == []


def test_api_errors(cassette: Callable[..., Any]) -> None:
    d = make(bot_token=TOKEN, channel="C123ABC456", channel_field="room")
    with cassette("api_errors") as cas:
        res = write_records(d, "messages", events(3, rooms=[None, None, "C0GONE"]),
                            operation="event")
    assert cas.all_played and res.pending == []
    assert [(r.index, r.reason.split(": ")[-1]) for r in res.rejected] == [
        (0, "msg_too_long"), (2, "channel_not_found")]


def test_check_auth_test(cassette: Callable[..., Any]) -> None:
    with cassette("api_auth_test") as cas:
        make(bot_token=TOKEN, channel="C123ABC456").check()
    assert cas.all_played


@pytest.mark.parametrize("name", ["webhook_post", "api_errors"])
def test_cassettes_parse(name: str) -> None:
    import yaml

    doc = yaml.safe_load((CASSETTES / f"{name}.yaml").read_text())
    assert doc["interactions"]

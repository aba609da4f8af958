"""conn's conformance suite for the ``slack`` destination (conn.testing.conformance),
against conn's fault server emulating Slack's incoming webhook as documented (see
``conftest.emulate``)."""

from __future__ import annotations

from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn_destination_slack.destination import SlackDestination

from .conftest import HOOK_PATH, emulate


def config(ctx: SuiteContext) -> dict[str, Any]:
    assert ctx.server is not None
    return {"webhook_url": ctx.server.url + HOOK_PATH, "text": "{name} id={id} ({score})",
            "rate_limit": {"requests": 1000}, "retry_base_delay": 0.01}


TestSlackDestinationConformance = destination_suite(
    SlackDestination,
    config=config,
    server=emulate,
    object="messages",
    sample_records=[
        {"id": "c-1", "name": "Ana Müller <ana@example.com>", "score": 1.5},
        {"id": "c-2", "name": "Bo & Co", "score": 0.0},
    ],
    rejected_record={"id": "c-bad", "name": "REFUSED", "score": 1.0},
    bad_config={"webhook_url": "hooks.slack.com/services/x", "batch_size": 0},
    failing_config=lambda ctx: {**config(ctx),
                                "webhook_url": ctx.server.url + "/services/T0/B0/revoked"},
    secret_values=[HOOK_PATH.rsplit("/", 1)[1]],
)

"""conn's conformance suite for the ``webhook`` destination (conn.testing.conformance),
against conn's fault server (its default batch handler is a webhook receiver)."""

from __future__ import annotations

from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn.testing.http import FaultServer, Reply
from conn_destination_webhook.destination import WebhookDestination

SECRET = "conf-signing-secret-7b3a"
REJECTED = "c-rejected"


def config(ctx: SuiteContext) -> dict[str, Any]:
    assert ctx.server is not None
    return {"url": ctx.server.url + "/hook", "secret": SECRET, "batch_size": 50}


def receiver(server: FaultServer) -> None:
    """Reject one record id; ``/refuse`` answers 401 like a receiver with another key."""
    server.configure(reject=[REJECTED])
    server.route("POST", "/refuse", lambda req, srv: Reply(401, json={"message": "bad "
                 "signature"}), faults=False)


TestWebhookDestinationConformance = destination_suite(
    WebhookDestination,
    config=config,
    server=receiver,
    object="records",
    sample_records=[
        {"id": "c-1", "email": "ana@example.com", "name": "Ana Müller", "score": 1.5},
        {"id": "c-2", "email": "bo@example.com", "name": "Bo", "score": 0.0},
    ],
    rejected_record={"id": REJECTED, "email": "x@example.com", "name": "x", "score": 1.0},
    bad_config={"url": 5, "batch_size": 0},
    failing_config=lambda ctx: {**config(ctx), "url": ctx.server.url + "/refuse"},
    secret_values=[SECRET],
)

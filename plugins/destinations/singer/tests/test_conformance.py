"""conn's conformance suite for the ``singer`` destination (conn.testing.conformance),
writing through the in-suite singer-sdk fixture target (``fixtures/edge_target.py``)."""

from __future__ import annotations

from typing import Any

from conn.testing.conformance import SuiteContext, destination_suite
from conn_destination_singer.destination import SingerDestination

PASSWORD = "conf-secret-password-9d2e"
FIELDS = {"id": {"type": "string"}, "email": {"type": "string"},
          "name": {"type": ["string", "null"]}, "ltv": {"type": ["number", "null"]}}


def config(ctx: SuiteContext, **target: Any) -> dict[str, Any]:
    out = ctx.tmp_path / "out"
    out.mkdir(exist_ok=True)
    return {"command": ctx.fixture("edge_target"),
            "config": {"output_dir": str(out), "password": PASSWORD, **target},
            "objects": [{"name": "contacts", "identifiers": ["id"], "fields": FIELDS}],
            "batch_size": 4}


TestSingerDestinationConformance = destination_suite(
    SingerDestination,
    config=config,
    object="contacts",
    sample_records=[
        {"id": "c-1", "email": "ana@example.com", "name": "Ana Müller", "ltv": 10.5},
        {"id": "c-2", "email": "bo@example.com", "name": "Bo", "ltv": 0.0},
    ],
    bad_config={"command": "", "objects": []},
    failing_config=lambda ctx: {**config(ctx), "command": [str(ctx.tmp_path / "nope")]},
    secret_values=[PASSWORD],
)

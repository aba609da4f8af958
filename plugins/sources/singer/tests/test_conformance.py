"""conn's conformance suite for the ``singer`` source (conn.testing.conformance), reading
the in-suite singer-sdk fixture tap (``fixtures/edge_tap.py``, run from its own venv)."""

from __future__ import annotations

from typing import Any

from conn.testing.conformance import SuiteContext, source_suite
from conn_source_singer.source import SingerSource

ROWS = 300
TOKEN = "conf-secret-token-4f1c"


def config(ctx: SuiteContext) -> dict[str, Any]:
    return {"command": ctx.fixture("edge_tap"),
            "config": {"rows": ROWS, "state_every": 50, "api_token": TOKEN}}


TestSingerSourceConformance = source_suite(
    SingerSource,
    config=config,
    stream="items",
    expected_rows=[{"id": i, "name": f"name-{i}"} for i in range(1, ROWS + 1)],
    bad_config={"command": [], "catalog_flag": "--both"},
    failing_config=lambda ctx: {"command": [str(ctx.tmp_path / "no-such-tap")],
                                "config": {"api_token": TOKEN}},
    batch_rows=40,
    secret_values=[TOKEN],
)

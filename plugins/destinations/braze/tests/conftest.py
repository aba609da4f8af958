"""The helpers every test module uses (cassettes replay through conn's ``cassette``
fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conn_destination_braze.destination import BrazeDestination

#: The hand-written cassettes (replayed with conn's ``cassette`` fixture).
CASSETTES = Path(__file__).parent / "cassettes"


KEY = "braze-test-rest-key-0000"
ENDPOINT = "https://rest.iad-01.braze.com"


def make(**config: Any) -> BrazeDestination:
    cfg = {"api_key": KEY, "rest_endpoint": ENDPOINT,
           "custom_attributes": {"ltv": {"type": "number"}, "health_score": {"type": "integer"}},
           "retry": {"base_delay": 0.01}, **config}
    BrazeDestination.validate_config(cfg)
    return BrazeDestination(cfg, instance="braze")


@pytest.fixture(autouse=True)
def _close_clients(close_http_clients: None) -> None:
    """Every test closes the HTTP clients its destinations opened (no stray sockets)."""

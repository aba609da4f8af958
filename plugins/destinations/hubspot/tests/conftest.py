"""The helpers every test module uses (cassettes replay through conn's ``cassette``
fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conn_destination_hubspot.destination import HubSpotDestination

#: The hand-written cassettes (replayed with conn's ``cassette`` fixture).
CASSETTES = Path(__file__).parent / "cassettes"


TOKEN = "pat-na1-00000000-test-token"
CUSTOM = {"contacts": {"ltv": {"type": "number"},
                       "health_score": {"type": "integer", "description": "0-100"}},
          "companies": {"warehouse_id": {"type": "string", "unique": True}}}


def make(**config: Any) -> HubSpotDestination:
    cfg = {"access_token": TOKEN, "custom_properties": CUSTOM,
           "retry": {"base_delay": 0.01, "max_attempts": 6}, **config}
    HubSpotDestination.validate_config(cfg)
    return HubSpotDestination(cfg, instance="crm")


@pytest.fixture(autouse=True)
def _close_clients(close_http_clients: None) -> None:
    """Every test closes the HTTP clients its destinations opened (no stray sockets)."""

"""Shared fixtures (replay-only cassettes matching request bodies as parsed data) and
the helpers every test module uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conn_destination_hubspot.destination import HubSpotDestination

CASSETTES = Path(__file__).parent / "cassettes"


@pytest.fixture
def cassette(vcr_for: Callable[..., Any]) -> Callable[[str], Any]:
    """``with cassette("name"):`` replays ``cassettes/name.yaml`` (never records), matching
    method, URL and body; every interaction must be played."""
    v = vcr_for(CASSETTES, record_mode="none", match_body=True)

    def use(name: str) -> Any:
        return v.use_cassette(name, allow_playback_repeats=False)

    return use


TOKEN = "pat-na1-00000000-test-token"
CUSTOM = {"contacts": {"ltv": {"type": "number"},
                       "health_score": {"type": "integer", "description": "0-100"}},
          "companies": {"warehouse_id": {"type": "string", "unique": True}}}


def make(**config: Any) -> HubSpotDestination:
    cfg = {"access_token": TOKEN, "custom_properties": CUSTOM,
           "retry": {"base_delay": 0.01, "max_attempts": 6}, **config}
    HubSpotDestination.validate_config(cfg)
    return HubSpotDestination(cfg, instance="crm")

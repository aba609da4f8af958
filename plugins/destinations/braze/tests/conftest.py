"""Shared fixtures (replay-only cassettes matching request bodies as parsed data) and
the helpers every test module uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conn_destination_braze.destination import BrazeDestination

CASSETTES = Path(__file__).parent / "cassettes"


@pytest.fixture
def cassette(vcr_for: Callable[..., Any]) -> Callable[[str], Any]:
    """``with cassette("name"):`` replays ``cassettes/name.yaml`` (never records), matching
    method, URL and body; every interaction must be played."""
    v = vcr_for(CASSETTES, record_mode="none", match_body=True)

    def use(name: str) -> Any:
        return v.use_cassette(name, allow_playback_repeats=False)

    return use


KEY = "braze-test-rest-key-0000"
ENDPOINT = "https://rest.iad-01.braze.com"


def make(**config: Any) -> BrazeDestination:
    cfg = {"api_key": KEY, "rest_endpoint": ENDPOINT,
           "custom_attributes": {"ltv": {"type": "number"}, "health_score": {"type": "integer"}},
           "retry": {"base_delay": 0.01}, **config}
    BrazeDestination.validate_config(cfg)
    return BrazeDestination(cfg, instance="braze")

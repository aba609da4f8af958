"""Shared fixtures (replay-only cassettes matching request bodies as parsed data) and
the helpers every test module uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conn_destination_salesforce.destination import SalesforceDestination

CASSETTES = Path(__file__).parent / "cassettes"


@pytest.fixture
def cassette(vcr_for: Callable[..., Any]) -> Callable[[str], Any]:
    """``with cassette("name"):`` replays ``cassettes/name.yaml`` (never records), matching
    method, URL and body; every interaction must be played."""
    v = vcr_for(CASSETTES, record_mode="none", match_body=True)

    def use(name: str) -> Any:
        return v.use_cassette(name, allow_playback_repeats=False)

    return use


SECRETS = {"client_id": "3MVG9-test-consumer-key", "client_secret": "sf-test-client-secret",
           "refresh_token": "5Aep-test-refresh-token"}
OBJECTS = {"Contact": {"external_id": "Warehouse_Id__c",
                       "fields": {"Email": {"type": ["string", "null"], "format": "email"},
                                  "LastName": {"type": ["string", "null"]},
                                  "LTV__c": {"type": ["number", "null"]}},
                       "personal": {"Email": "email", "LastName": "name"},
                       "bulk_threshold": 2000}}


def make(**config: Any) -> SalesforceDestination:
    cfg = {**SECRETS, "objects": OBJECTS, "retry": {"base_delay": 0.01}, **config}
    SalesforceDestination.validate_config(cfg)
    dest = SalesforceDestination(cfg, instance="sf")
    dest.sleep = lambda s: None
    return dest


ADA = {"Warehouse_Id__c": "W-1", "Email": "ada@example.com", "LastName": "Lovelace",
       "LTV__c": 1300.0}

"""The helpers every test module uses (cassettes replay through conn's ``cassette``
fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conn_destination_salesforce.destination import SalesforceDestination

#: The hand-written cassettes (replayed with conn's ``cassette`` fixture).
CASSETTES = Path(__file__).parent / "cassettes"


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


@pytest.fixture(autouse=True)
def _close_clients(close_http_clients: None) -> None:
    """Every test closes the HTTP clients its destinations opened (no stray sockets)."""

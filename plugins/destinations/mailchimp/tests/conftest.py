"""Fixtures shared by the mailchimp tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

API_KEY = "0123456789abcdef0123456789abcdef-us6"
LIST_ID = "a1b2c3d4e5"


@pytest.fixture
def mc_vcr(vcr_for: Callable[..., Any]) -> Any:
    """A replay-only VCR that also compares JSON request bodies with the cassette."""
    return vcr_for(match_body=True)


@pytest.fixture
def make_dest() -> Iterator[Callable[..., Any]]:
    """Build a destination whose retries do not really sleep."""
    from conn_destination_mailchimp.destination import MailchimpDestination

    made = []

    def factory(**config: Any) -> MailchimpDestination:
        cfg = {"api_key": API_KEY, "list_id": LIST_ID, "concurrency": 1, **config}
        MailchimpDestination.validate_config(cfg)
        d = MailchimpDestination(cfg, instance="mc")
        d.client_options = {"sleep": lambda s: None, "seed": 1}
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close()

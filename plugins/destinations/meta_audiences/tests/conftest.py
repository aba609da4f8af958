"""Fixtures shared by the meta_audiences tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

TOKEN = "EAAGm0PX4ZCpsBAtesttokenvalue"
AUDIENCE = "23850000000000001"


@pytest.fixture
def meta_vcr(vcr_for: Callable[..., Any]) -> Any:
    """A replay-only VCR that also compares JSON request bodies with the cassette."""
    return vcr_for(match_body=True, ignore_body_keys=("session_id",))


@pytest.fixture
def make_dest() -> Iterator[Callable[..., Any]]:
    """Build a destination whose retries do not really sleep."""
    from conn_destination_meta_audiences.destination import MetaAudiencesDestination

    made = []

    def factory(**config: Any) -> MetaAudiencesDestination:
        cfg = {"access_token": TOKEN, "audience_id": AUDIENCE, **config}
        MetaAudiencesDestination.validate_config(cfg)
        d = MetaAudiencesDestination(cfg, instance="meta")
        d.client_options = {"sleep": lambda s: None, "seed": 1}
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close()

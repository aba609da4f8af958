"""Fixtures shared by the meta_audiences tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

TOKEN = "EAAGm0PX4ZCpsBAtesttokenvalue"
AUDIENCE = "23850000000000001"


def _json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: request bodies equal as JSON, ignoring the random session_id."""
    def parse(body: Any) -> Any:
        if not body:
            return None
        doc = json.loads(body.decode() if isinstance(body, bytes) else body)
        if isinstance(doc, dict) and isinstance(doc.get("session"), dict):
            doc["session"]["session_id"] = "<any>"
        return doc

    a, b = parse(r1.body), parse(r2.body)
    assert a == b, f"request body differs from the cassette:\n sent: {a}\n want: {b}"


@pytest.fixture
def meta_vcr(vcr_for: Callable[..., Any]) -> Any:
    """A replay-only VCR that also compares JSON request bodies with the cassette."""
    v = vcr_for(match_on=("method", "scheme", "host", "port", "path", "query", "json_body"))
    v.register_matcher("json_body", _json_body)
    return v


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

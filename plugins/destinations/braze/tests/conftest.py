"""Shared fixtures: a vcrpy factory matching request bodies as parsed JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

CASSETTES = Path(__file__).parent / "cassettes"


def _parsed(body: Any) -> Any:
    if body in (None, b"", ""):
        return None
    text = body.decode() if isinstance(body, bytes) else str(body)
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "\n" in text.strip() or "=" not in text:  # CSV or plain text
        return text.strip()
    return sorted(parse_qsl(text))


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: bodies equal once parsed (JSON, form or text), whatever the spacing."""
    assert _parsed(r1.body) == _parsed(r2.body), f"{_parsed(r1.body)} != {_parsed(r2.body)}"


@pytest.fixture
def cassette(vcr_for: Callable[..., Any]) -> Callable[[str], Any]:
    """``with cassette("name"):`` replays ``cassettes/name.yaml`` (never records), matching
    method, URL and body; every interaction must be played."""
    v = vcr_for(CASSETTES, record_mode="none",
                match_on=("method", "scheme", "host", "port", "path", "query", "json_body"))
    v.register_matcher("json_body", json_body)

    def use(name: str) -> Any:
        return v.use_cassette(name, allow_playback_repeats=False)

    return use

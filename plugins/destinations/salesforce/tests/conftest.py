"""Shared fixtures: replay-only cassettes matching request bodies as parsed data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CASSETTES = Path(__file__).parent / "cassettes"


@pytest.fixture
def cassette(vcr_for: Callable[..., Any]) -> Callable[[str], Any]:
    """``with cassette("name"):`` replays ``cassettes/name.yaml`` (never records), matching
    method, URL and body; every interaction must be played."""
    v = vcr_for(CASSETTES, record_mode="none", match_body=True)

    def use(name: str) -> Any:
        return v.use_cassette(name, allow_playback_repeats=False)

    return use

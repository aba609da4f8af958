"""Exactly one event per crossing (docs/traits.md, "Triggers"): random value sequences
through a threshold trigger with hysteresis and a cooldown, run after run with the real
runtime, with lost acknowledgements and crashes after the vendor took the events between
runs, against the plain model of :mod:`tests.traits.trigger_model`. An event the
destination took again after a crash carries the id it had the first time."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.traits.trigger_model import model, numbered, run_all, scenarios

_n = itertools.count()


@pytest.mark.slow
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_one_event_per_crossing(tmp_path: Path, sc: dict[str, Any]) -> None:
    got = numbered(run_all(tmp_path / f"p{next(_n)}", sc))
    assert got == model(sc)

"""Exactly one event per crossing (docs/traits.md, "Triggers"): random value sequences
through a threshold trigger with hysteresis and a cooldown, run after run with the real
runtime, with lost acknowledgements and crashes after the vendor took the events between
runs, against the plain model of :mod:`tests.traits.trigger_model`. An event the
destination took again after a crash carries the id it had the first time. The
trigger's state is kept by each state backend: the embedded DuckDB files and
PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import unavailable
from tests.state.conftest import PG_URL, make_store, pg_available
from tests.traits.trigger_model import model, numbered, run_all, scenarios

_n = itertools.count()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["duckdb", pytest.param("postgres",
                                                          marks=pytest.mark.services)])
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_one_event_per_crossing(tmp_path: Path, kind: str, sc: dict[str, Any]) -> None:
    if kind == "postgres" and not pg_available():
        unavailable("PostgreSQL not reachable at 127.0.0.1:5432")
    folder = tmp_path / f"p{next(_n)}"
    schema = f"conn_trig_{uuid.uuid4().hex[:10]}"
    store = make_store(kind, folder / "state", schema)
    try:
        got = numbered(run_all(folder, sc, store))
    finally:
        store.close()
        if kind == "postgres":
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as c:
                c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    assert got == model(sc)

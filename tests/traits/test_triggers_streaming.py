"""A trigger on a followed sync (docs/traits.md): evaluated on every micro-batch, with
hysteresis, through the consent gate, and with a trait computed for the micro-batch's
keys from another stream."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from conn.testing.sync import SyncHarness

from tests import fakes

SCHEMA = pa.schema([("id", pa.string()), ("email", pa.string()), ("health", pa.float64()),
                    ("mkt", pa.string())])


@pytest.fixture
def h(tmp_path: Path):
    fakes.reset()
    with SyncHarness(tmp_path) as harness:
        harness.destination("crm", fakes.RecordingDestination,
                            {"modes": ["events", "upsert"]}, purposes=["marketing"])
        harness.stream("people", pa.Table.from_pylist([], schema=SCHEMA), primary_key="id")
        harness.sections["triggers"] = {"dropped": {"watch": "health", "below": 40,
                                                    "rearm": 50}}
        yield harness


def test_each_micro_batch_fires_once_per_crossing(h: SyncHarness) -> None:
    f = h.follow("crm", "people", object="contacts", match_key="email", mode="events",
                 trigger="dropped", event={"name": "dropped", "time_from": "trigger_at"},
                 consent={"columns": {"marketing": "mkt"}}, max_latency_ms=5,
                 mapping={"id": "id", "email": "email", "plan": "trigger_value"})
    # Key 1: 60 (first sight), 30 (fires), 45 (still disarmed), 35 (no), 55 (re-arms),
    # 20 (fires). Key 2 crosses without consent, then with it.
    steps = [("1", 60, "yes"), ("2", 70, "yes"), ("1", 30, "yes"), ("2", 30, "no"),
             ("1", 45, "yes"), ("1", 35, "yes"), ("2", 25, "yes"), ("1", 55, "yes"),
             ("1", 20, "yes")]
    for n, (key, value, mkt) in enumerate(steps, start=1):
        h.changes("people", [{"id": key, "email": f"u{key}@example.com", "health": value,
                              "mkt": mkt}], ["update"])
        if not f.wait_rows(n, timeout=20):
            f.stop()
            raise AssertionError(f"micro-batch {n} not committed")
    rep = f.stop()
    assert rep.status == "ok", rep.error
    events = [(r["id"], r["plan"]) for _, op, recs in fakes.RECEIVED for r in recs
              if op == "event"]
    assert events == [("1", "30"), ("2", "25"), ("1", "20")]
    assert rep.consent_denied == 1

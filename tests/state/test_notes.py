"""Notes (conn.alerts' last notice per rule and sync) in every state backend: written by
one store, read by another on the same state, replaced by key, separate by topic."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.one_planner_path


def test_notes_round_trip_across_stores(backend):
    _, factory = backend
    first = factory()
    notes = first.notes()
    assert notes is not None
    assert notes.read("alerts") == {}  # nothing written yet (no table either)
    notes.write("alerts", "down/crm", {"state": "firing", "sent": 1, "since": 1.5})
    notes.write("alerts", "big/crm", {"state": "ok", "last_error": None})
    notes.write("other", "down/crm", {"x": [1, 2]})
    notes.write("alerts", "down/crm", {"state": "ok", "sent": 2, "since": 9.25})
    again = factory().notes()
    assert again is not None
    assert again.read("alerts") == {"big/crm": {"state": "ok", "last_error": None},
                                    "down/crm": {"state": "ok", "sent": 2, "since": 9.25}}
    assert again.read("other") == {"down/crm": {"x": [1, 2]}}
    # The run history beside them is untouched.
    first.record_run("crm", "r1", {"status": "ok"})
    assert [r["run_id"] for r in factory().runs("crm")] == ["r1"]

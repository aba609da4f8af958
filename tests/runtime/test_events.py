"""``mode: events`` without a process (docs/sync-modes.md, "Events"): the mode's operation,
the validation of ``event:`` in conn.yml, event times as UTC text, and events read back
from a request (ids are the records' idempotency keys). The real CLI runs are in
``test_events_cli.py``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conn.config import load_project
from conn.destination import MODES, Capabilities
from conn.errors import ConfigError, ConfigErrors
from conn.events import envelopes, iso_time

PROJECT = """\
version: 1
sources:
  mem: {{type: memory}}
destinations:
  crm: {{type: recorder}}
syncs:
  s1:
    source: mem
    stream: people
    destination: crm
    object: contacts
    primary_key: id
{extra}
"""


def load(tmp_path: Path, extra: str, registry) -> object:
    p = tmp_path / "conn.yml"
    p.write_text(PROJECT.format(extra=extra))
    return load_project(p, registry=registry)


def errors_of(exc: ConfigError | ConfigErrors) -> list[tuple[str | None, str]]:
    errs = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    return [(e.path, str(e)) for e in errs]


def test_events_mode_and_its_operation() -> None:
    assert "events" in MODES
    assert Capabilities(modes=frozenset({"events"})).operations() == {"event"}
    assert "event" not in Capabilities().operations()


def test_an_events_sync_loads(tmp_path: Path, registry) -> None:
    proj = load(tmp_path, "    mode: events\n    event: {name_from: kind, time_from: at}",
                registry)
    assert proj.syncs["s1"].event == {"name_from": "kind", "time_from": "at"}


@pytest.mark.parametrize(("extra", "path", "words"), [
    ("    mode: events", "syncs.s1.event", "needs 'event'"),
    ("    mode: events\n    event: {time_from: at}", "syncs.s1.event", "exactly one of"),
    ("    mode: events\n    event: {name: a, name_from: b, time_from: at}", "syncs.s1.event",
     "exactly one of"),
    ("    mode: events\n    event: {name: a}", "syncs.s1.event.time_from", "time_from"),
    ("    mode: events\n    event: {name: a, time_from: at, when: x}", "syncs.s1.event",
     "unknown key"),
    ("    event: {name: a, time_from: at}", "syncs.s1.event", "only read in 'mode: events'"),
])
def test_event_settings_are_validated(tmp_path: Path, registry, extra: str, path: str,
                                      words: str) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load(tmp_path, extra, registry)
    found = errors_of(info.value)
    assert any(p == path and words in msg for p, msg in found), found


def test_event_times_are_utc_text_with_milliseconds() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert iso_time(dt.datetime(2026, 12, 1, 10, 0, 1, 234567)) == "2026-12-01T10:00:01.234Z"
    assert iso_time(dt.datetime(2026, 12, 1, 11, 0, tzinfo=paris)) == \
        "2026-12-01T10:00:00.000Z"
    assert iso_time(dt.date(2026, 12, 1)) == "2026-12-01T00:00:00.000Z"
    assert iso_time(None) is None


def test_envelopes_carry_ids_person_and_properties(registry) -> None:
    from conn.testing.harness import event_batch, make_request

    from tests import fakes

    dest = fakes.RecordingDestination({"modes": ["events"]}, instance="crm")
    rows = [{"email": "a@example.com", "plan": "pro", "seats": 3},
            {"email": "b@example.com", "plan": None, "seats": 1}]
    req = make_request(dest, "contacts", event_batch(rows, "upgraded", "2026-12-01T10:00:00"),
                       "event", match_key="email")
    evs = envelopes(req)
    assert [e["id"] for e in evs] == req.idempotency_keys()
    assert evs[0] == {"id": evs[0]["id"], "name": "upgraded",
                      "occurred_at": "2026-12-01T10:00:00.000Z",
                      "person": {"email": "a@example.com"},
                      "properties": {"plan": "pro", "seats": 3}}
    assert evs[1]["properties"] == {"plan": None, "seats": 1}
    assert dest.write(req).pending == []  # "events" declared: the operation is accepted

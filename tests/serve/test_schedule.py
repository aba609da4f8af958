"""A sync's ``schedule:`` as docs/realtime.md describes it: ``{every: DURATION}`` or
``{cron: EXPR, timezone: ZONE}``, validated with errors naming the file, the path and
what was expected; cron times computed by croniter in the zone, from a fixed clock; and
``conn check`` showing them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conn.config import load_project
from conn.config.schedule import Cron, Interval, parse_duration, parse_schedule
from conn.errors import ConfigError, ConfigErrors

from tests.cli.test_cli import run_cli

PROJECT = """\
version: 1
sources:
  wh: {type: memory, config: {}}
destinations:
  crm: {type: recorder, config: {}}
syncs:
  a:
    source: wh
    stream: people
    destination: crm
    object: contacts
    SCHEDULE
  b:
    source: wh
    stream: people
    destination: crm
    object: contacts
"""


def write(tmp_path, schedule: str):
    path = tmp_path / "conn.yml"
    path.write_text(PROJECT.replace("SCHEDULE", schedule))
    return path


def problems(tmp_path, schedule: str) -> list[ConfigError]:
    path = write(tmp_path, schedule)
    with pytest.raises((ConfigError, ConfigErrors)) as exc:
        load_project(path, validate_plugins=False)
    err = exc.value
    return list(err.errors) if isinstance(err, ConfigErrors) else [err]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800),
    ("0.5s", 0.5), ("1m 30s", 90)])
def test_intervals(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "15x", "1h-30m", "fifteen minutes"])
def test_not_intervals(text):
    assert parse_duration(text) is None


def test_both_forms_load(tmp_path):
    path = write(tmp_path, "schedule: {every: 15m}")
    proj = load_project(path, validate_plugins=False)
    assert proj.syncs["a"].schedule == Interval(900.0, "15m")
    assert proj.syncs["b"].schedule is None
    path = write(tmp_path, 'schedule: {cron: "*/5 * * * *", timezone: Europe/Paris}')
    proj = load_project(path, validate_plugins=False)
    assert proj.syncs["a"].schedule == Cron("*/5 * * * *", "Europe/Paris")


@pytest.mark.parametrize(("schedule", "path", "expected"), [
    ("schedule: {every: 15x}", "syncs.a.schedule.every", "expected an interval such as 30s"),
    ("schedule: {every: 0s}", "syncs.a.schedule.every", "expected an interval"),
    ('schedule: {cron: "61 * * * *"}', "syncs.a.schedule.cron", "expected a cron expression"),
    ('schedule: {cron: "15m"}', "syncs.a.schedule.cron", "that is an interval: write 'every:'"),
    ('schedule: {cron: "0 * * * *", timezone: Mars/Olympus}', "syncs.a.schedule.timezone",
     "expected an IANA time zone name"),
    ("schedule: {every: 1h, timezone: UTC}", "syncs.a.schedule.timezone",
     "'timezone' applies to 'cron' schedules only"),
    ('schedule: {every: 1h, cron: "0 * * * *"}', "syncs.a.schedule",
     "expected exactly one of 'every'"),
    ("schedule: {}", "syncs.a.schedule", "expected exactly one of 'every'"),
    ("schedule: {each: 1h}", "syncs.a.schedule", "unknown key(s) 'each'"),
    ("schedule: 15m", "syncs.a.schedule", "expected a mapping, got string"),
    ("schedule: {every: 15}", "syncs.a.schedule.every", "expected a string, got integer"),
])
def test_errors_name_file_path_and_what_was_expected(tmp_path, schedule, path, expected):
    errs = problems(tmp_path, schedule)
    assert [e.path for e in errs] == [path], [str(e) for e in errs]
    assert expected in errs[0].detail
    assert errs[0].file == str(tmp_path / "conn.yml")


def test_cron_next_times_with_a_fixed_clock():
    noon = datetime(2026, 3, 28, 12, 0, 30, tzinfo=UTC)
    assert Cron("*/15 * * * *").next_after(noon, noon) == datetime(2026, 3, 28, 12, 15,
                                                                   tzinfo=UTC)
    # 08:00 in Paris is 07:00 UTC in winter and 06:00 UTC after the change to summer
    # time (2026-03-29).
    paris = Cron("0 8 * * *", "Europe/Paris")
    first = paris.next_after(noon, noon)
    assert first == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert paris.next_after(first, first) == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    friday = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    weekdays = Cron("0 8 * * 1-5")
    assert weekdays.next_after(friday, friday) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert Cron("@hourly").first_after_start(noon) == datetime(2026, 3, 28, 13, tzinfo=UTC)


def test_an_interval_runs_at_start_then_keeps_its_rhythm():
    every = Interval(60.0, "1m")
    start = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert every.first_after_start(start) == start
    assert every.next_after(start, start) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    # A run that overran two periods: the missed starts are not made up.
    late = datetime(2026, 1, 1, 0, 2, 10, tzinfo=UTC)
    assert every.next_after(start, late) == datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    exact = datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    assert every.next_after(start, exact) == datetime(2026, 1, 1, 0, 4, tzinfo=UTC)


def test_parse_schedule_leaves_type_errors_to_the_schema():
    assert parse_schedule("15m", file="f", path="p") == (None, [])
    assert parse_schedule({"every": 15}, file="f", path="p") == (None, [])


def test_conn_check_shows_schedules_and_next_run(tmp_path, registry, monkeypatch, capsys):
    write(tmp_path, 'schedule: {cron: "30 6 * * *", timezone: Asia/Tokyo}')
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "check", "--offline", "--json")
    assert code == 0, err
    checks = [c for c in json.loads(out)["checks"] if c["check"] == "schedule"]
    assert len(checks) == 1 and checks[0]["target"] == "a"
    assert checks[0]["schedule"] == "cron '30 6 * * *' (Asia/Tokyo)"
    nxt = datetime.fromisoformat(checks[0]["next_run"].replace("Z", "+00:00"))
    assert (nxt.hour, nxt.minute) == (21, 30)  # 06:30 in Tokyo (UTC+9)
    assert checks[0]["next_run_local"].endswith("T06:30:00+09:00")
    write(tmp_path, "schedule: {every: 1h30m}")
    code, out, _ = run_cli(monkeypatch, capsys, "check", "--offline")
    assert code == 0
    assert "every 1h30m, first run when conn serve starts" in out
    write(tmp_path, "schedule: {every: soon}")
    code, out, err = run_cli(monkeypatch, capsys, "check", "--offline")
    assert code == 3
    assert "conn.yml: syncs.a.schedule.every: expected an interval" in err

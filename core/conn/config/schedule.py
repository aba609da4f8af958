"""A sync's ``schedule:``: when ``conn serve`` runs it.

Two forms, one key each (docs/realtime.md, "Schedules")::

    schedule: {every: 15m}                                   # an interval
    schedule: {cron: "0 8 * * 1-5", timezone: Europe/Paris}  # a cron expression

An interval is one or more ``<number><unit>`` parts, units ``s``, ``m``, ``h`` and ``d``
(``30s``, ``15m``, ``1h30m``, ``0.5s``); the first run is when ``conn serve`` starts, then
every interval after it. A cron expression is evaluated with ``croniter`` (five fields:
minute, hour, day of month, month, day of week; or ``@hourly``, ``@daily``...) in
``timezone`` (an IANA name, default ``UTC``); the first run is the first matching time
after the start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from conn.errors import ConfigError

_PART = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: What the messages say an interval looks like.
EVERY_HINT = "an interval such as 30s, 15m, 1h or 1h30m (units s, m, h, d)"
CRON_HINT = "a cron expression such as '*/15 * * * *' (minute hour day month weekday)"


def parse_duration(text: str) -> float | None:
    """Seconds in ``text`` (``1h30m`` -> 5400.0), or None when it is not an interval."""
    compact = text.replace(" ", "").lower()
    if not compact or _PART.sub("", compact):
        return None
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(compact))


@dataclass(frozen=True)
class Interval:
    """``every: <duration>``: runs at start, start + every, start + 2 every, ..."""

    seconds: float
    text: str

    def first_after_start(self, start: datetime) -> datetime:
        """The first run of a process started at ``start``: at once."""
        return start

    def next_after(self, anchor: datetime, now: datetime) -> datetime:
        """The first ``anchor + k * every`` strictly after ``now`` (k >= 1): runs missed
        while a run overran are not made up, the rhythm is kept."""
        step = timedelta(seconds=self.seconds)
        k = max(1, int((now - anchor) / step) + 1)
        due = anchor + k * step
        while due <= now:  # float rounding at an exact multiple
            due += step
        return due

    def describe(self) -> str:
        return f"every {self.text}"


@dataclass(frozen=True)
class Cron:
    """``cron: <expression>`` in ``timezone``: runs at each matching time."""

    expression: str
    timezone: str = "UTC"

    @property
    def tz(self) -> tzinfo:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    def first_after_start(self, start: datetime) -> datetime:
        """The first run of a process started at ``start``: the next matching time."""
        return self.next_after(start, start)

    def next_after(self, anchor: datetime, now: datetime) -> datetime:
        """The first matching time strictly after ``now`` (``anchor`` is not used: cron
        times are absolute)."""
        from croniter import croniter

        local = now.astimezone(self.tz)
        nxt: datetime = croniter(self.expression, local).get_next(datetime)
        return nxt.astimezone(UTC)

    def describe(self) -> str:
        return f"cron '{self.expression}' ({self.timezone})"


Schedule = Interval | Cron


def parse_schedule(raw: Any, *, file: str, path: str) -> tuple[Schedule | None,
                                                                list[ConfigError]]:
    """The schedule at ``path`` (``syncs.NAME.schedule``) of ``file``, or the problems
    with it, each naming what was expected. Types and unknown keys are the JSON Schema's
    to report: nothing is said here about a value that is not a mapping of strings."""
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()) \
            or set(raw) - {"every", "cron", "timezone"}:
        return None, []
    every, cron, zone = raw.get("every"), raw.get("cron"), raw.get("timezone")
    if (every is None) == (cron is None):
        return None, [ConfigError(f"expected exactly one of 'every' ({EVERY_HINT}) or "
                                  f"'cron' ({CRON_HINT})", file=file, path=path)]
    if every is not None:
        if zone is not None:
            return None, [ConfigError("'timezone' applies to 'cron' schedules only (an "
                                      "interval does not depend on the time zone)",
                                      file=file, path=f"{path}.timezone")]
        seconds = parse_duration(every)
        if seconds is None or seconds <= 0:
            return None, [ConfigError(f"expected {EVERY_HINT}, got {every!r}", file=file,
                                      path=f"{path}.every")]
        return Interval(seconds, every.strip()), []
    errors: list[ConfigError] = []
    assert cron is not None
    zone = zone or "UTC"
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(ConfigError(f"expected an IANA time zone name such as UTC or "
                                  f"Europe/Paris, got {zone!r}", file=file,
                                  path=f"{path}.timezone"))
    from croniter import croniter

    if not croniter.is_valid(cron):
        hint = " (that is an interval: write 'every:')" if parse_duration(cron) else ""
        errors.append(ConfigError(f"expected {CRON_HINT}, got {cron!r}{hint}", file=file,
                                  path=f"{path}.cron"))
    return (None, errors) if errors else (Cron(cron.strip(), zone), [])

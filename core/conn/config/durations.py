"""Durations written in ``conn.yml`` (``consent.max_age``): parsed once, with errors that
say which forms are accepted.

Accepted forms (docs/consent.md, "Consent expiry"):

* ``<whole number> <unit>``: units ``second``, ``minute``, ``hour``, ``day``, ``week``,
  ``month``, ``year`` (singular or plural, any case): ``24 months``, ``730 days``;
* an ISO 8601 duration of whole numbers: ``P2Y``, ``P24M``, ``P730D``, ``P1Y6M``,
  ``P2W``, ``PT36H``, ``P1DT12H``.

Months and years are calendar units (added to a date, the day is kept and clamped to the
month's last day: 31 January + 1 month is 28/29 February); the rest is exact time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conn.errors import ConfigError

#: Units of the ``<number> <unit>`` form: (months, days, seconds) per unit.
_UNITS: dict[str, tuple[int, int, int]] = {
    "second": (0, 0, 1), "minute": (0, 0, 60), "hour": (0, 0, 3600), "day": (0, 1, 0),
    "week": (0, 7, 0), "month": (1, 0, 0), "year": (12, 0, 0),
}
_WORDS = re.compile(r"^\s*(\d+)\s*([a-z]+?)s?\s*$")
_ISO = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                  r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")

#: What an error message says is accepted.
EXPECTED = ("a positive duration such as '24 months', '730 days', '2 years' (units: "
            "seconds, minutes, hours, days, weeks, months, years) or an ISO 8601 duration "
            "such as 'P2Y', 'P24M', 'P730D', 'PT36H'")


@dataclass(frozen=True)
class Duration:
    """A calendar duration: whole months, days and seconds, added in that order."""

    months: int = 0
    days: int = 0
    seconds: int = 0
    text: str = ""

    def sql(self) -> str:
        """The DuckDB interval to add to a ``TIMESTAMP``."""
        return (f"(to_months({self.months}) + to_days({self.days}) + "
                f"to_seconds({self.seconds}))")

    def __str__(self) -> str:
        return self.text


def parse_duration(value: object, *, file: str | None = None, path: str | None = None
                   ) -> Duration:
    """``value`` as a :class:`Duration`; :class:`ConfigError` naming ``file`` and ``path``
    and the accepted forms otherwise (a bare number is refused: its unit is unknown)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ConfigError(f"expected {EXPECTED}, got {value!r}", file=file, path=path)
    text = value.strip()
    words = _WORDS.match(text.lower())
    if words and words.group(2) in _UNITS:
        n = int(words.group(1))
        m, d, s = (n * x for x in _UNITS[words.group(2)])
        out = Duration(m, d, s, text)
    else:
        iso = _ISO.match(text.upper()) if text.upper() not in ("P", "PT") else None
        if iso is None or text.upper().endswith("T"):
            raise ConfigError(f"expected {EXPECTED}, got {value!r}", file=file, path=path)
        y, mo, w, d, h, mi, s = (int(g) if g else 0 for g in iso.groups())
        out = Duration(12 * y + mo, 7 * w + d, 3600 * h + 60 * mi + s, text)
    if not (out.months or out.days or out.seconds):
        raise ConfigError(f"expected {EXPECTED}, got {value!r} (a zero duration would "
                          f"expire every consent at once)", file=file, path=path)
    return out

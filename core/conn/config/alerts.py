"""The ``alerts:`` section of ``conn.yml``: rules on a run's outcome and the channels
they are sent to (``docs/alerts.md``).

``${ENV}`` references are resolved here, channel by channel: a channel naming an unset
variable is kept, marked unusable (:attr:`Channel.problem`), and every delivery to it
fails with that message, while the rest of the project works. Resolved values are
registered as secrets, and so is every webhook URL (a Slack webhook's URL is its token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conn import schemas, secrets
from conn.config.load import interpolate
from conn.config.model import Project
from conn.config.schedule import EVERY_HINT, parse_duration
from conn.config.validate import schema_errors
from conn.errors import ConfigError

#: What each rule watches (``when:``).
KINDS = ("failed", "rejected_share", "volume", "consent_withheld_share", "lag")
_SHARE_KINDS = ("rejected_share", "consent_withheld_share")
_VOLUME_KEYS = ("metric", "window", "min_runs", "mad", "percent")
#: A lag rule's thresholds (at least one) and how long one must be passed.
LAG_LIMITS = ("above_seconds", "above_bytes", "above_messages")
_LAG_KEYS = (*LAG_LIMITS, "for_seconds")
DEFAULT_COOLDOWN = "1h"
DEFAULT_WINDOW = 10
DEFAULT_MIN_RUNS = 5
#: The band of a volume rule that names neither ``mad`` nor ``percent``.
DEFAULT_MAD = 3.0


@dataclass(frozen=True)
class Channel:
    """One entry of ``alerts.channels``: ``settings`` with ``${ENV}`` resolved."""

    name: str
    type: str
    settings: dict[str, Any]
    #: Why it cannot deliver (an unset ``${VAR}``), or None.
    problem: ConfigError | None = None


@dataclass(frozen=True)
class Rule:
    """One entry of ``alerts.rules``."""

    name: str
    when: str
    channels: tuple[str, ...]
    #: The syncs it watches; None: every sync.
    syncs: tuple[str, ...] | None
    cooldown: float
    above: float | None = None
    metric: str = "rows_sent"
    window: int = DEFAULT_WINDOW
    min_runs: int = DEFAULT_MIN_RUNS
    mad: float | None = None
    percent: float | None = None
    #: lag: the thresholds (None: not watched) and how long one must be passed.
    above_seconds: float | None = None
    above_bytes: int | None = None
    above_messages: int | None = None
    for_seconds: float = 0.0

    def watches(self, sync: str) -> bool:
        return self.syncs is None or sync in self.syncs

    def describe(self) -> str:
        """The rule in words, for ``conn alerts list``."""
        if self.when == "failed":
            return "the run failed"
        if self.when == "rejected_share":
            return f"rejected share > {self.above:.2%}"
        if self.when == "lag":
            limits = [f"{k.removeprefix('above_')} > {getattr(self, k):g}"
                      for k in LAG_LIMITS if getattr(self, k) is not None]
            return (f"source lag {' or '.join(limits)} for {self.for_seconds:g} s "
                    "(while followed)")
        if self.when == "consent_withheld_share":
            return f"consent withheld share > {self.above:.2%}"
        bands = [f"{self.mad:g}*MAD" if self.mad else "",
                 f"{self.percent:g}% of the median" if self.percent else ""]
        return (f"{self.metric} outside the median of the last {self.window} successful "
                f"runs +- {' or '.join(b for b in bands if b)} (wider wins; "
                f">= {self.min_runs} runs)")


@dataclass(frozen=True)
class AlertsConfig:
    """The parsed ``alerts:`` section."""

    file: str
    channels: dict[str, Channel] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    link: str | None = None

    def link_for(self, sync: str, run_id: str) -> str | None:
        if not self.link:
            return None
        return self.link.replace("{sync}", sync).replace("{run_id}", run_id)


def alert_config_errors(project: Project) -> list[ConfigError]:
    """Every problem of the project's ``alerts:`` section (none when it has none)."""
    return _parse(project)[1]


def load_alerts(project: Project) -> AlertsConfig | None:
    """The project's ``alerts:`` section, or None when it declares none. Raises the
    first :class:`ConfigError` (``load_project`` has reported them all already)."""
    if not project.raw.get("alerts"):
        return None
    config, errors = _parse(project)
    if errors:
        raise errors[0]
    return config


def _parse(project: Project) -> tuple[AlertsConfig, list[ConfigError]]:
    file = str(project.file)
    raw = project.raw.get("alerts")
    out = AlertsConfig(file=file)
    if raw is None:
        return out, []
    if not isinstance(raw, dict):
        return out, [ConfigError("expected a mapping", file=file, path="alerts")]
    errors: list[ConfigError] = []
    channels: dict[str, Channel] = {}
    raw_channels = raw.get("channels")
    for name, entry in (raw_channels.items() if isinstance(raw_channels, dict) else ()):
        unset: list[ConfigError] = []
        resolved = interpolate(entry, file, f"alerts.channels.{name}", unset)
        if isinstance(resolved, dict) and resolved.get("type") in ("webhook", "slack"):
            secrets.register(resolved.get("url"))
        if isinstance(resolved, dict) and isinstance(resolved.get("ca_file"), str) \
                and resolved["ca_file"]:
            resolved["ca_file"] = str(project.resolve_path(resolved["ca_file"]))
        channels[str(name)] = Channel(str(name), str((resolved or {}).get("type", ""))
                                      if isinstance(resolved, dict) else "",
                                      resolved if isinstance(resolved, dict) else {},
                                      unset[0] if unset else None)
    rest = interpolate({k: v for k, v in raw.items() if k != "channels"}, file, "alerts",
                       errors)
    checked = dict(rest, channels={n: c.settings for n, c in channels.items()}) \
        if raw_channels is not None else rest
    unset_paths = [f"alerts.channels.{n}" for n, c in channels.items() if c.problem]
    errors += [e for e in schema_errors(checked, schemas.load("alerts.schema.json"),
                                        file=file, path="alerts",
                                        registry=schemas.registry())
               if not any((e.path or "").startswith(p) for p in unset_paths)]
    if errors:
        return out, errors
    default_cooldown = _seconds(rest.get("cooldown", DEFAULT_COOLDOWN), file,
                                "alerts.cooldown", errors)
    rules = {}
    for name, r in (rest.get("rules") or {}).items():
        rule = _rule(str(name), r, project, channels, default_cooldown, errors)
        if rule is not None:
            rules[str(name)] = rule
    return AlertsConfig(file, channels, rules, rest.get("link")), errors


def _rule(name: str, r: dict[str, Any], project: Project, channels: dict[str, Channel],
          default_cooldown: float, errors: list[ConfigError]) -> Rule | None:
    file, base = str(project.file), f"alerts.rules.{name}"
    found: list[ConfigError] = []
    when = r["when"]
    for ch in r.get("channels") or ():
        if ch not in channels:
            found.append(ConfigError(f"unknown channel {ch!r} (declared: "
                                     f"{', '.join(channels) or 'none'})", file=file,
                                     path=f"{base}.channels"))
    for s in r.get("syncs") or ():
        if s not in project.syncs:
            found.append(ConfigError(f"unknown sync {s!r} (declared: "
                                     f"{', '.join(project.syncs) or 'none'})", file=file,
                                     path=f"{base}.syncs"))
    if when in _SHARE_KINDS and "above" not in r:
        found.append(ConfigError(f"a '{when}' rule needs 'above': the share (0 to 1, "
                                 "0.05 is 5%) above which it fires", file=file, path=base))
    if when not in _SHARE_KINDS and "above" in r:
        found.append(ConfigError(f"'above' is only read by rejected_share and "
                                 f"consent_withheld_share rules (this one is {when!r})",
                                 file=file, path=f"{base}.above"))
    stray = [k for k in _VOLUME_KEYS if k in r]
    if when != "volume" and stray:
        found.append(ConfigError(f"{', '.join(map(repr, stray))} only apply to 'volume' "
                                 f"rules (this one is {when!r})", file=file,
                                 path=f"{base}.{stray[0]}"))
    stray = [k for k in _LAG_KEYS if k in r]
    if when != "lag" and stray:
        found.append(ConfigError(f"{', '.join(map(repr, stray))} only apply to 'lag' "
                                 f"rules (this one is {when!r})", file=file,
                                 path=f"{base}.{stray[0]}"))
    if when == "lag" and not any(k in r for k in LAG_LIMITS):
        found.append(ConfigError("a 'lag' rule needs a threshold: above_seconds, "
                                 "above_bytes and/or above_messages (what the source "
                                 "reports: docs/alerts.md)", file=file, path=base))
    window = int(r.get("window", DEFAULT_WINDOW))
    min_runs = int(r.get("min_runs", min(DEFAULT_MIN_RUNS, window)))
    if min_runs > window:
        found.append(ConfigError(f"min_runs ({min_runs}) is larger than window ({window}): "
                                 "the rule could never be evaluated", file=file,
                                 path=f"{base}.min_runs"))
    cooldown = (_seconds(r["cooldown"], file, f"{base}.cooldown", found)
                if "cooldown" in r else default_cooldown)
    errors += found
    if found:
        return None
    mad, percent = r.get("mad"), r.get("percent")
    if when == "volume" and mad is None and percent is None:
        mad = DEFAULT_MAD
    return Rule(name=name, when=when, channels=tuple(r.get("channels") or channels),
                syncs=tuple(r["syncs"]) if r.get("syncs") else None, cooldown=cooldown,
                above=r.get("above"), metric=r.get("metric", "rows_sent"), window=window,
                min_runs=min_runs, mad=None if mad is None else float(mad),
                percent=None if percent is None else float(percent),
                above_seconds=r.get("above_seconds"), above_bytes=r.get("above_bytes"),
                above_messages=r.get("above_messages"),
                for_seconds=float(r.get("for_seconds", 0)))


def _seconds(value: Any, file: str, path: str, errors: list[ConfigError]) -> float:
    """A cooldown written like a schedule's ``every:`` (``0s``: no cooldown)."""
    seconds = parse_duration(value) if isinstance(value, str) else None
    if seconds is None:
        errors.append(ConfigError(f"expected {EVERY_HINT}, got {value!r}", file=file,
                                  path=path))
        return 0.0
    return seconds

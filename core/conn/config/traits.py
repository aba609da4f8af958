"""``traits:``, ``audiences:`` and ``triggers:`` of ``conn.yml``, parsed and checked.

The JSON Schema (``schemas/traits.schema.json``) checks each entry's shape; this module
checks what a schema cannot: one kind per entry, the columns each aggregate needs, known
names, no cycle between traits, durations, hysteresis on the right side of its
threshold, and the syncs that send an audience or a trigger. Every error names the file
and the path of the value (see docs/traits.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from conn.config.schedule import parse_duration
from conn.errors import ConfigError

#: Aggregates over a stream, and those that need the stream's time column.
AGGREGATES = ("count", "sum", "avg", "min", "max", "first", "last", "distinct", "recency")
TIMED = ("first", "last", "recency")
#: Aggregates whose value for a key without matching events is 0 rather than null.
ZERO_WHEN_NONE = ("count", "distinct")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Trait:
    """One computed column. Exactly one of: an ``aggregate`` over ``source``/``stream``
    per ``key``; a ``ratio`` of two traits; an ``sql`` expression over traits.
    ``window`` is in seconds (None: all time); ``needs`` the traits it reads."""

    name: str
    source: str | None = None
    stream: str | None = None
    key: str | None = None
    aggregate: str | None = None
    column: str | None = None
    time: str | None = None
    window: float | None = None
    where: str | None = None
    ratio: tuple[str, str] | None = None
    sql: str | None = None
    needs: tuple[str, ...] = ()

    @property
    def derived(self) -> bool:
        return self.aggregate is None


@dataclass(frozen=True)
class Trigger:
    """Events on transitions of ``on`` (a column, a trait or, for an audience trigger,
    the membership flag). Threshold kind: ``below``/``above`` with ``rearm``; change
    kind: ``change``. ``cooldown`` in seconds (0: none)."""

    name: str
    on: str
    kind: str  # "below" | "above" | "change"
    threshold: float | None = None
    rearm: float | None = None
    cooldown: float = 0.0
    audience: str | None = None


@dataclass(frozen=True)
class Activation:
    """The project's traits (in dependency order), audiences (name -> SQL condition)
    and triggers."""

    traits: dict[str, Trait] = field(default_factory=dict)
    audiences: dict[str, str] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)

    def closure(self, names: set[str]) -> list[str]:
        """The traits among ``names`` and every trait they need, in dependency order."""
        want: set[str] = set()
        todo = [n for n in names if n in self.traits]
        while todo:
            n = todo.pop()
            if n not in want:
                want.add(n)
                todo += [d for d in self.traits[n].needs if d in self.traits]
        return [n for n in self.traits if n in want]

    def referenced(self, text: str) -> set[str]:
        """Trait names appearing as words in an SQL text."""
        return {w for w in _WORD.findall(text) if w in self.traits}


def _section(data: dict[str, Any], name: str) -> dict[Any, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def condition_sql(cond: Any) -> str:
    """An audience condition (text, ``{all: [...]}`` or ``{any: [...]}``) as SQL."""
    if isinstance(cond, str):
        return f"({cond})"
    if isinstance(cond, dict) and isinstance(cond.get("all"), list):
        return "(" + " AND ".join(condition_sql(c) for c in cond["all"]) + ")"
    if isinstance(cond, dict) and isinstance(cond.get("any"), list):
        return "(" + " OR ".join(condition_sql(c) for c in cond["any"]) + ")"
    return "(false)"  # the schema reports the shape


def parse_activation(data: dict[str, Any], file: str) -> tuple[Activation, list[ConfigError]]:
    """Parse the three sections of an interpolated, schema-checked ``conn.yml``."""
    errs: list[ConfigError] = []
    raw_traits = _section(data, "traits")
    traits: dict[str, Trait] = {}
    sources = _section(data, "sources")
    names = {str(n) for n in raw_traits}
    for name, t in raw_traits.items():
        if isinstance(t, dict):
            trait, problems = _trait(str(name), t, names, sources, file)
            errs += problems
            traits[str(name)] = trait
    ordered, cycle = _order(traits)
    if cycle:
        errs.append(ConfigError(f"traits depend on each other in a cycle: "
                                f"{' -> '.join(cycle)}", file=file,
                                path=f"traits.{cycle[0]}"))
    raw_aud = _section(data, "audiences")
    audiences = {str(n): condition_sql(a.get("where")) for n, a in raw_aud.items()
                 if isinstance(a, dict)}
    raw_trig = _section(data, "triggers")
    triggers: dict[str, Trigger] = {}
    for name, t in raw_trig.items():
        if isinstance(t, dict):
            trig, problems = _trigger(str(name), t, audiences, file)
            errs += problems
            if trig is not None:
                triggers[str(name)] = trig
    act = Activation(ordered, audiences, triggers)
    errs += _sync_errors(data, act, file)
    return act, errs


def _trait(name: str, t: dict[str, Any], names: set[str], sources: dict[str, Any],
           file: str) -> tuple[Trait, list[ConfigError]]:
    base = f"traits.{name}"
    errs: list[ConfigError] = []
    kinds = [k for k in ("aggregate", "ratio", "sql") if k in t]
    if len(kinds) != 1:
        errs.append(ConfigError("expected exactly one of 'aggregate' (over a stream), "
                                "'ratio' (of two traits) or 'sql' (an expression over "
                                f"traits); found {kinds or 'none'}", file=file, path=base))
    if "ratio" in t or "sql" in t:
        stray = [k for k in ("source", "stream", "key", "column", "time", "window", "where")
                 if k in t]
        if stray:
            errs.append(ConfigError(f"{stray} only apply to an 'aggregate' trait",
                                    file=file, path=f"{base}.{stray[0]}"))
        if "ratio" in t:
            pair = tuple(str(x) for x in t["ratio"])
            for i, other in enumerate(pair):
                if other not in names:
                    errs.append(ConfigError(f"unknown trait {other!r} (traits: "
                                            f"{', '.join(sorted(names))})", file=file,
                                            path=f"{base}.ratio[{i}]"))
            return Trait(name, ratio=(pair[0], pair[1]), needs=pair), errs
        sql = str(t.get("sql", ""))
        needs = tuple(sorted({w for w in _WORD.findall(sql) if w in names} - {name}))
        if name in set(_WORD.findall(sql)):
            errs.append(ConfigError(f"trait {name!r} reads itself", file=file,
                                    path=f"{base}.sql"))
        return Trait(name, sql=sql, needs=needs), errs
    agg = t.get("aggregate")
    for k in ("source", "stream", "key"):
        if k not in t:
            errs.append(ConfigError(f"an 'aggregate' trait needs '{k}'", file=file,
                                    path=f"{base}.{k}"))
    if "source" in t and t["source"] not in sources:
        errs.append(ConfigError(f"unknown source {t['source']!r} (declared: "
                                f"{', '.join(map(str, sources)) or 'none'})", file=file,
                                path=f"{base}.source"))
    if agg in ("count", "recency") and "column" in t:
        errs.append(ConfigError(f"'{agg}' takes no 'column' (use 'where' to choose the "
                                "events)", file=file, path=f"{base}.column"))
    if agg not in ("count", "recency", None) and "column" not in t:
        errs.append(ConfigError(f"'{agg}' needs 'column': the column it aggregates",
                                file=file, path=f"{base}.column"))
    window: float | None = None
    w = t.get("window", "all")
    if isinstance(w, str) and w.strip().lower() not in ("all", "all time"):
        window = parse_duration(w.strip())
        if not window:
            errs.append(ConfigError(f"window {w!r} is not 'all' or a duration such as 7d, "
                                    "30d, 12h (units s, m, h, d)", file=file,
                                    path=f"{base}.window"))
    if (window is not None or agg in TIMED) and "time" not in t:
        why = "a window" if window is not None else f"'{agg}'"
        errs.append(ConfigError(f"{why} needs 'time': the column holding when each event "
                                "occurred", file=file, path=f"{base}.time"))
    return Trait(name, source=t.get("source"), stream=t.get("stream"), key=t.get("key"),
                 aggregate=agg, column=t.get("column"), time=t.get("time"),
                 window=window, where=t.get("where")), errs


def _order(traits: dict[str, Trait]) -> tuple[dict[str, Trait], list[str]]:
    """Traits in dependency order, or the names along a cycle."""
    done: dict[str, Trait] = {}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n: str, path: list[str]) -> None:
        nonlocal cycle
        if cycle or state.get(n) == 2 or n not in traits:
            return
        if state.get(n) == 1:
            cycle = [*path[path.index(n):], n]
            return
        state[n] = 1
        for d in traits[n].needs:
            visit(d, [*path, n])
        state[n] = 2
        done[n] = traits[n]

    for n in traits:
        visit(n, [])
    return (traits if cycle else done), cycle


def _trigger(name: str, t: dict[str, Any], audiences: dict[str, str],
             file: str) -> tuple[Trigger | None, list[ConfigError]]:
    base = f"triggers.{name}"
    errs: list[ConfigError] = []
    kinds = [k for k in ("below", "above", "change", "audience") if k in t]
    if len(kinds) != 1:
        errs.append(ConfigError("expected exactly one of 'below', 'above' (a threshold), "
                                f"'change' or 'audience'; found {kinds or 'none'}",
                                file=file, path=base))
        return None, errs
    kind = kinds[0]
    cooldown = 0.0
    if "cooldown" in t:
        cooldown = parse_duration(str(t["cooldown"]).strip()) or 0.0
        if not cooldown:
            errs.append(ConfigError(f"cooldown {t['cooldown']!r} is not a duration such as "
                                    "30m, 1h, 7d", file=file, path=f"{base}.cooldown"))
    if kind == "audience":
        aud = str(t["audience"])
        if aud not in audiences:
            errs.append(ConfigError(f"unknown audience {aud!r} (audiences: "
                                    f"{', '.join(sorted(audiences)) or 'none'})",
                                    file=file, path=f"{base}.audience"))
        if t.get("when") not in ("enter", "leave"):
            errs.append(ConfigError("an audience trigger needs 'when: enter' or "
                                    "'when: leave'", file=file, path=f"{base}.when"))
        for k in ("watch", "rearm"):
            if k in t:
                errs.append(ConfigError(f"'{k}' does not apply to an audience trigger",
                                        file=file, path=f"{base}.{k}"))
        # Membership as 0/1: entering is rising above 0.5, leaving falling below it.
        direction = "above" if t.get("when") == "enter" else "below"
        return Trigger(name, on=aud, kind=direction, threshold=0.5, rearm=0.5,
                       cooldown=cooldown, audience=aud), errs
    if "watch" not in t:
        errs.append(ConfigError("a trigger needs 'watch': the column or trait it watches",
                                file=file, path=f"{base}.watch"))
    if "when" in t:
        errs.append(ConfigError("'when' only applies to an audience trigger", file=file,
                                path=f"{base}.when"))
    if kind == "change":
        if "rearm" in t:
            errs.append(ConfigError("'rearm' applies to 'below' and 'above' only",
                                    file=file, path=f"{base}.rearm"))
        return Trigger(name, on=str(t.get("watch", "")), kind="change",
                       cooldown=cooldown), errs
    threshold = float(t[kind])
    rearm = float(t.get("rearm", threshold))
    if (kind == "below" and rearm < threshold) or (kind == "above" and rearm > threshold):
        side = "at or above" if kind == "below" else "at or below"
        errs.append(ConfigError(f"'rearm' must be {side} the threshold {threshold:g} "
                                f"(it is {rearm:g}): the value comes back past it before "
                                "the trigger may fire again", file=file,
                                path=f"{base}.rearm"))
    return Trigger(name, on=str(t.get("watch", "")), kind=kind, threshold=threshold,
                   rearm=rearm, cooldown=cooldown), errs


def _sync_errors(data: dict[str, Any], act: Activation, file: str) -> list[ConfigError]:
    """A sync's ``trigger`` (events mode, a declared trigger) and ``audience``."""
    errs = []
    syncs = _section(data, "syncs")
    for name, s in syncs.items():
        if not isinstance(s, dict):
            continue
        base = f"syncs.{name}"
        if "trigger" in s:
            if s["trigger"] not in act.triggers:
                errs.append(ConfigError(f"unknown trigger {s['trigger']!r} (triggers: "
                                        f"{', '.join(sorted(act.triggers)) or 'none'})",
                                        file=file, path=f"{base}.trigger"))
            if s.get("mode") != "events":
                errs.append(ConfigError("a trigger's events are sent by a sync in "
                                        f"'mode: events' (mode is {s.get('mode', 'upsert')!r})",
                                        file=file, path=f"{base}.mode"))
        if "audience" in s and s["audience"] not in act.audiences:
            errs.append(ConfigError(f"unknown audience {s['audience']!r} (audiences: "
                                    f"{', '.join(sorted(act.audiences)) or 'none'})",
                                    file=file, path=f"{base}.audience"))
    return errs

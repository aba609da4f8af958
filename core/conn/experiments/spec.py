"""The ``holdout:`` entry of a sync, an audience or a trigger in ``conn.yml``, as a typed
object.

The JSON Schema (``schemas/experiments.schema.json``) checks each entry's shape; this
module names the experiment, fills the salt's default and checks what the schema cannot
see: two entries may not share an experiment's name, and a sync takes part in one
experiment at most (its own, its audience's or its trigger's).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig

#: Sections whose entries may declare a ``holdout:`` and, for each, the sync's key that
#: names an entry (None: the sync's own).
OWNERS = (("syncs", None), ("audiences", "audience"), ("triggers", "trigger"))


@dataclass(frozen=True)
class HoldoutSpec:
    """One experiment: ``percent`` of the keys (by a hash salted with ``salt``) held out
    of the destination of sync ``sync`` (the one running; the first to run for an
    audience's or a trigger's experiment). ``owner`` is the entry that declares it
    (``syncs.NAME``, ``audiences.NAME`` or ``triggers.NAME``)."""

    name: str
    percent: Decimal
    salt: str
    sync: str
    file: str = ""
    owner: str = ""

    @property
    def path(self) -> str:
        return f"{self.owner or 'syncs.' + self.sync}.holdout"

    @property
    def of_sync(self) -> bool:
        """Whether the sync declares it itself (not its audience or trigger)."""
        return not self.owner or self.owner.startswith("syncs.")

    def design(self) -> dict[str, str]:
        """What defines the split: a change of either value is a new experiment."""
        return {"percent": format(self.percent.normalize(), "f"), "salt": self.salt}

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "sync": self.sync, "percent": float(self.percent),
               "salt": self.salt}
        if not self.of_sync:
            kind, _, entry = self.owner.partition(".")
            out[kind.rstrip("s")] = entry  # "audience": NAME or "trigger": NAME
        return out


def _spec(raw: Any, owner: str, sync: str, file: str) -> HoldoutSpec | None:
    if not isinstance(raw, dict):
        return None
    name = str(raw.get("name") or owner.partition(".")[2])
    try:
        percent = Decimal(str(raw.get("percent")))
    except ArithmeticError:
        raise ConfigError(f"percent {raw.get('percent')!r} is not a number", file=file,
                          path=f"{owner}.holdout.percent") from None
    if not Decimal(0) < percent < Decimal(100):
        raise ConfigError(f"percent {raw.get('percent')!r} must be above 0 and below 100",
                          file=file, path=f"{owner}.holdout.percent")
    return HoldoutSpec(name=name, percent=percent, salt=str(raw.get("salt") or name),
                       sync=sync, file=file, owner=owner)


def holdout_of(sync: SyncConfig, file: str = "", project: Project | None = None
               ) -> HoldoutSpec | None:
    """The experiment ``sync`` takes part in: its own ``holdout:``, else (with
    ``project``) that of the audience or trigger it sends; None when there is none."""
    found = _declared(sync, file, project)
    return found[0] if found else None


def _declared(sync: SyncConfig, file: str, project: Project | None) -> list[HoldoutSpec]:
    raw = sync.raw if isinstance(sync.raw, dict) else {}
    out = []
    for section, ref in OWNERS:
        if ref is None:
            spec = _spec(raw.get("holdout"), f"syncs.{sync.name}", sync.name, file)
        elif project is not None and isinstance(raw.get(ref), str):
            entries = project.raw.get(section)
            entry = entries.get(raw[ref]) if isinstance(entries, dict) else None
            spec = _spec(entry.get("holdout") if isinstance(entry, dict) else None,
                         f"{section}.{raw[ref]}", sync.name, file)
        else:
            spec = None
        if spec is not None:
            out.append(spec)
    return out


def project_holdouts(project: Project) -> dict[str, HoldoutSpec]:
    """Every experiment of the project by name (of a sync, or of an audience or a
    trigger that a sync sends)."""
    out: dict[str, HoldoutSpec] = {}
    for sync in project.syncs.values():
        for spec in _declared(sync, str(project.file), project):
            out.setdefault(spec.name, spec)
    return out


def holdout_errors(project: Project) -> list[ConfigError]:
    """Problems the schema cannot see: an experiment name declared by two entries, a
    sync in two experiments."""
    errs: list[ConfigError] = []
    file = str(project.file)
    seen: dict[str, str] = {}
    for section, _ in OWNERS:
        entries = {n: s.raw for n, s in project.syncs.items()} if section == "syncs" \
            else project.raw.get(section)
        for name, entry in (entries.items() if isinstance(entries, dict) else []):
            try:
                spec = _spec(entry.get("holdout") if isinstance(entry, dict) else None,
                             f"{section}.{name}", str(name), file)
            except ConfigError as exc:
                errs.append(exc)
                continue
            if spec is None:
                continue
            if spec.name in seen:
                errs.append(ConfigError(
                    f"experiment {spec.name!r} is already the holdout of {seen[spec.name]}; "
                    "give this one its own 'name'", file=file, path=f"{spec.path}.name"))
            seen.setdefault(spec.name, f"{section[:-1]} {str(name)!r}")
    for sync in project.syncs.values():
        try:
            found = _declared(sync, file, project)
        except ConfigError:
            continue  # reported above
        if len(found) > 1:
            errs.append(ConfigError(
                f"sync {sync.name!r} would take part in {len(found)} holdout experiments "
                f"({', '.join(s.path for s in found)}); a sync runs one: keep one of them",
                file=file, path=f"syncs.{sync.name}"))
    return errs

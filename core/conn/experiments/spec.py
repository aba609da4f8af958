"""The ``holdout:`` entry of a sync in ``conn.yml``, as a typed object.

The JSON Schema (``schemas/experiments.schema.json``) checks each entry's shape; this
module names the experiment, fills the salt's default and checks what the schema cannot
see: two syncs may not share an experiment's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig


@dataclass(frozen=True)
class HoldoutSpec:
    """One experiment: ``percent`` of the keys (by a hash salted with ``salt``) held out
    of sync ``sync``'s destination. ``path`` is where conn.yml declares it."""

    name: str
    percent: Decimal
    salt: str
    sync: str
    file: str = ""

    @property
    def path(self) -> str:
        return f"syncs.{self.sync}.holdout"

    def design(self) -> dict[str, str]:
        """What defines the split: a change of either value is a new experiment."""
        return {"percent": format(self.percent.normalize(), "f"), "salt": self.salt}

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sync": self.sync, "percent": float(self.percent),
                "salt": self.salt}


def holdout_of(sync: SyncConfig, file: str = "") -> HoldoutSpec | None:
    """The sync's experiment, or None when it declares no ``holdout:``."""
    raw = sync.raw.get("holdout") if isinstance(sync.raw, dict) else None
    if not isinstance(raw, dict):
        return None
    name = str(raw.get("name") or sync.name)
    try:
        percent = Decimal(str(raw.get("percent")))
    except ArithmeticError:
        raise ConfigError(f"percent {raw.get('percent')!r} is not a number", file=file,
                          path=f"syncs.{sync.name}.holdout.percent") from None
    if not Decimal(0) < percent < Decimal(100):
        raise ConfigError(f"percent {raw.get('percent')!r} must be above 0 and below 100",
                          file=file, path=f"syncs.{sync.name}.holdout.percent")
    return HoldoutSpec(name=name, percent=percent, salt=str(raw.get("salt") or name),
                       sync=sync.name, file=file)


def project_holdouts(project: Project) -> dict[str, HoldoutSpec]:
    """Every experiment of the project by name."""
    out: dict[str, HoldoutSpec] = {}
    for sync in project.syncs.values():
        spec = holdout_of(sync, str(project.file))
        if spec is not None:
            out.setdefault(spec.name, spec)
    return out


def holdout_errors(project: Project) -> list[ConfigError]:
    """Problems the schema cannot see: an experiment name used by two syncs."""
    errs: list[ConfigError] = []
    seen: dict[str, str] = {}
    for sync in project.syncs.values():
        try:
            spec = holdout_of(sync, str(project.file))
        except ConfigError as exc:
            errs.append(exc)
            continue
        if spec is None:
            continue
        if spec.name in seen:
            errs.append(ConfigError(
                f"experiment {spec.name!r} is already the holdout of sync "
                f"{seen[spec.name]!r}; give this one its own 'name'",
                file=str(project.file), path=f"{spec.path}.name"))
        seen.setdefault(spec.name, sync.name)
    return errs

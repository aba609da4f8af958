"""The validated project: what ``conn.yml`` declares, as typed objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from conn.config.schedule import Schedule


@dataclass(frozen=True)
class ConnectorConfig:
    """One entry of ``sources:`` or ``destinations:``."""

    name: str
    type: str
    config: dict[str, Any]
    purposes: tuple[str, ...] = ()
    policies: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


class Connectors(dict[str, ConnectorConfig]):
    """``sources:`` or ``destinations:`` by name. A connector whose config names an unset
    ``${VAR}`` is listed, but taking it by name (``table[name]``, ``table.get(name)``)
    raises that configuration error: only the commands that use it fail."""

    def __init__(self, items: Any = (), *,
                 unresolved: dict[str, list[ConfigError]] | None = None) -> None:
        super().__init__(items)
        #: name -> the errors of its unset environment variables
        self.unresolved: dict[str, list[ConfigError]] = dict(unresolved or {})

    def __getitem__(self, name: str) -> ConnectorConfig:
        errors = self.unresolved.get(name)
        if errors:
            raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self:
            return default
        return self[name]


@dataclass(frozen=True)
class SyncConfig:
    """One entry of ``syncs:``: what to read, where to send it and how."""

    name: str
    source: str
    destination: str
    object: str
    stream: str | None = None
    query: str | None = None
    primary_key: tuple[str, ...] = ()
    match_key: str | None = None
    mode: str = "upsert"
    #: ``mode: events``: the event's ``name`` or ``name_from``, and ``time_from``.
    event: dict[str, Any] | None = None
    mapping: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, Any] = field(default_factory=dict)
    purposes: tuple[str, ...] | None = None
    policies: dict[str, Any] = field(default_factory=dict)
    personal: dict[str, str] = field(default_factory=dict)
    batch_rows: int | None = None
    #: When ``conn serve`` runs it (None: serve leaves it to ``conn sync``).
    schedule: Schedule | None = None
    #: Streaming syncs: the longest a change waits in a micro-batch (milliseconds).
    max_latency_ms: int | None = None
    #: ``follow: true``: ``conn serve`` follows the source's changes continuously.
    follow: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """A loaded, interpolated and validated ``conn.yml``."""

    file: Path
    sources: dict[str, ConnectorConfig]
    destinations: dict[str, ConnectorConfig]
    syncs: dict[str, SyncConfig]
    consent_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.file.parent

    @property
    def state_dir(self) -> Path:
        return self.dir / ".conn"

    def syncs_between(self, source: str, destination: str) -> list[SyncConfig]:
        return [s for s in self.syncs.values()
                if s.source == source and s.destination == destination]

    def resolve_path(self, value: str) -> Path:
        """Paths in conn.yml are relative to the file that declares them."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.dir / p

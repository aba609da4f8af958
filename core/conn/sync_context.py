"""What the runtime hands the consent gate and the mapper when a sync starts: the
sync's whole context (project, sync, destination, object, stream, registry, consent
events, match key). A bottom-layer module: it imports nothing of conn at run time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.config.model import ConnectorConfig, Project, SyncConfig
    from conn.destination import ObjectInfo
    from conn.plugins import Registry
    from conn.privacy.suppression import Suppression
    from conn.source import StreamInfo


@dataclass
class SyncContext:
    """Everything a sync's gate and mapper may consult.

    ``consent_events(name)`` reads a declared consent source completely and returns its
    events as an Arrow table (the runtime reads it through the source plugin).
    ``now``: when the run started (consent expiry is judged at that instant; None: the
    time the gate is built). ``suppression``: the project's suppression list (``conn
    forget``), which the gate withholds; None for none."""

    project: Project
    sync: SyncConfig
    destination: ConnectorConfig
    object: ObjectInfo
    stream: StreamInfo
    registry: Registry
    consent_events: Callable[[str], pa.Table]
    match_key: str
    now: datetime | None = None
    suppression: Suppression | None = None

    @property
    def purposes(self) -> tuple[str, ...]:
        """The purposes rows must have consent for: the sync's narrower set if given."""
        if self.sync.purposes is not None:
            return self.sync.purposes
        return self.destination.purposes

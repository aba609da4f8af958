"""Run and sync reports: what ``conn sync --json`` prints and the run history stores."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conn.secrets import redact_obj


@dataclass
class RunInfo:
    """Identity of one ``conn sync`` invocation, handed to observer hooks."""

    run_id: str
    project_dir: Path
    syncs: list[str]
    started_at: float = field(default_factory=time.time)
    dry_run: bool = False
    full_resync: bool = False

    @classmethod
    def new(cls, project_dir: Path, syncs: list[str], **kw: Any) -> RunInfo:
        return cls(uuid.uuid4().hex[:12], project_dir, syncs, **kw)


@dataclass
class SyncReport:
    """Figures of one sync in one run. Statuses: ``ok``, ``rejected`` (finished, some rows
    rejected), ``failed`` (stopped early; unacknowledged rows stay pending), ``dry_run``,
    ``paused`` (not run: ``conn pause``)."""

    name: str
    source: str = ""
    destination: str = ""
    object: str = ""
    mode: str = ""
    run_id: str = ""
    started_at: float = 0.0
    status: str = "running"
    rows_read: int = 0
    consent_denied: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    #: Absorbed profiles merged into their survivors through the destination's merge
    #: API (docs/profiles.md, "Merges reach destinations"; left out when none).
    merged: int = 0
    unchanged: int = 0
    skipped: int = 0
    rejected: int = 0
    pending: int = 0
    retried: int = 0
    consent: dict[str, Any] = field(default_factory=dict)
    #: purpose -> legal basis -> rows passed on it (``consent`` or a declared basis).
    legal_bases: dict[str, Any] = field(default_factory=dict)
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    preview: list[dict[str, Any]] = field(default_factory=list)
    #: Pending erasures (``conn forget``) retried at the start of the run: ``retried``,
    #: ``erased``, ``pending`` (left out when there were none).
    erasures: dict[str, int] = field(default_factory=dict)
    #: A holdout experiment (``holdout:``): its design and this run's counts of keys that
    #: passed the gate (``eligible``), sent on (``treatment``) and ``held_out``.
    experiment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    seconds: float = 0.0
    #: A run of the rejected rows only (``conn retry``, the UI's "Retry rejected").
    rejected_only: bool = False

    @property
    def sent(self) -> int:
        return self.inserted + self.updated + self.deleted

    def add_rejections(self, reasons: list[str]) -> None:
        self.rejected += len(reasons)
        for r in reasons:
            short = r if len(r) <= 200 else r[:197] + "..."
            self.rejection_reasons[short] = self.rejection_reasons.get(short, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["preview"]:
            d.pop("preview")
        for optional in ("erasures", "experiment", "rejected_only", "merged"):
            if not d[optional]:
                d.pop(optional)
        return redact_obj(d)


@dataclass
class RunReport:
    """All syncs of one run."""

    run: RunInfo
    syncs: list[SyncReport] = field(default_factory=list)
    finished_at: float | None = None
    #: The alert notices tried after the run (:class:`conn.alerts.Delivery`): in the
    #: dict (``conn sync --json``) when there were any, and in ``conn serve``'s metrics.
    alerts: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "dry_run", "paused") for s in self.syncs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "started_at": self.run.started_at,
            "finished_at": self.finished_at,
            "dry_run": self.run.dry_run,
            "status": "ok" if self.ok else "failed",
            "syncs": [s.as_dict() for s in self.syncs],
            **({"alerts": redact_obj([asdict(a) for a in self.alerts])} if self.alerts
               else {}),
        }

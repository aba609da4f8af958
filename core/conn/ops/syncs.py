"""The syncs: their overview, a run, a preview, pausing (``conn sync``, ``conn preview``,
``conn pause``, ``conn resume`` and the UI's syncs page and buttons)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conn.config.load import plugin_config_errors
from conn.errors import ConfigError, ConfigErrors
from conn.ops.history import require_sync, rows_sent
from conn.runtime.runner import ProgressFn, RunOptions, run_syncs
from conn.state import paused as paused_state

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig
    from conn.plugins import Registry
    from conn.runtime.report import RunReport
    from conn.state.contracts import StateStore


def validate_connectors(proj: Project, registry: Registry, syncs: list[SyncConfig]) -> None:
    """Validate the plugin config of the connectors these syncs use, and only those."""
    names: set[str] = set()
    for s in syncs:
        names |= {s.source, s.destination}
        cs = (s.consent or {}).get("source")
        if cs and cs in proj.consent_sources:
            names.add(proj.consent_sources[cs]["source"])
    errors = plugin_config_errors(proj, registry, only=names)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)


def syncs_between(proj: Project, source: str, destination: str, names: list[str]
                  ) -> list[SyncConfig]:
    """The syncs ``conn sync SOURCE DEST [--sync NAME ...]`` runs, or the error saying
    what is declared instead."""
    f = str(proj.file)
    syncs = proj.syncs_between(source, destination)
    if source not in proj.sources:
        raise ConfigError(f"no source named {source!r} (declared: "
                          f"{', '.join(proj.sources) or 'none'})", file=f, path="sources")
    if destination not in proj.destinations:
        raise ConfigError(f"no destination named {destination!r} (declared: "
                          f"{', '.join(proj.destinations) or 'none'})", file=f,
                          path="destinations")
    if names:
        unknown = [n for n in names if n not in {s.name for s in syncs}]
        if unknown:
            raise ConfigError(f"no sync {unknown[0]!r} from {source!r} to {destination!r} "
                              f"(declared: {', '.join(s.name for s in syncs) or 'none'})",
                              file=f, path="syncs")
        syncs = [s for s in syncs if s.name in names]
    if not syncs:
        raise ConfigError(f"no sync from {source!r} to {destination!r}; declare one under "
                          f"'syncs:'", file=f, path="syncs")
    return syncs


def run(proj: Project, registry: Registry, syncs: list[SyncConfig], options: RunOptions,
        progress: ProgressFn | None = None) -> RunReport:
    """One run of these syncs (``conn sync``, the UI's "Run now"): their connectors'
    config validated, then the runner; paused syncs are reported as ``paused`` and not
    run."""
    validate_connectors(proj, registry, syncs)
    return run_syncs(proj, syncs, registry, options, progress)


def retry_rejected(proj: Project, registry: Registry, sync: str,
                   options: RunOptions | None = None, progress: ProgressFn | None = None
                   ) -> RunReport:
    """Send only the rows currently rejected for ``sync`` (``conn retry``, the UI's
    "Retry rejected"): a run of :func:`run` reading the whole source and keeping the
    rejected keys (:mod:`conn.runtime.retry`), through the same consent gate, mapper and
    planner; it is recorded like any run, marked ``rejected_only``."""
    require_sync(proj, sync)
    opts = replace(options or RunOptions(), rejected_only=True)
    return run(proj, registry, [proj.syncs[sync]], opts, progress)


def preview(proj: Project, registry: Registry, sync: str, rows: int) -> dict[str, Any]:
    """What the next run of ``sync`` would send (``conn preview``, the UI's preview page):
    a dry run, nothing sent or stored. ``counts``: the planned inserts, updates, deletes,
    unchanged and withheld rows; ``requests``: the first ``rows`` records as the
    destination would receive them (secrets redacted)."""
    require_sync(proj, sync)
    report = run(proj, registry, [proj.syncs[sync]], RunOptions(dry_run=True,
                                                                preview_rows=rows))
    s = report.syncs[0]
    return {"sync": s.name, "status": s.status, "requests": s.preview, "error": s.error,
            "counts": {"read": s.rows_read, "consent_denied": s.consent_denied,
                       "insert": s.inserted, "update": s.updated, "delete": s.deleted,
                       "unchanged": s.unchanged, "rejected": s.rejected,
                       "skipped": s.skipped}}


def pause(proj: Project, sync: str, reason: str = "") -> dict[str, Any]:
    """Pause a sync: runs skip it until :func:`resume` (``conn pause``)."""
    require_sync(proj, sync)
    return {"sync": sync, "paused": True,
            **paused_state.pause(proj.state_dir, sync, reason)}


def resume(proj: Project, sync: str) -> dict[str, Any]:
    """Resume a paused sync (``conn resume``); ``was_paused`` says whether it was."""
    require_sync(proj, sync)
    return {"sync": sync, "paused": False,
            "was_paused": paused_state.resume(proj.state_dir, sync)}


def _schedule(sync: SyncConfig) -> dict[str, Any] | None:
    from conn.config.schedule import Cron

    sched = sync.schedule
    if sched is None:
        return None
    nxt = None
    if isinstance(sched, Cron):
        now = datetime.now(UTC)
        nxt = sched.next_after(now, now).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"describe": sched.describe(), "next_run": nxt}


def overview(proj: Project, store: StateStore, *, runs_per_sync: int = 30
             ) -> list[dict[str, Any]]:
    """Every sync of the project: where it goes, its schedule, whether it is paused, its
    last run and the rows sent by each recent run (oldest first, for a chart)."""
    held = paused_state.paused(proj.state_dir)
    out = []
    for sync in proj.syncs.values():
        history = store.runs(sync.name, runs_per_sync)
        last = history[0] if history else None
        out.append({
            "name": sync.name, "source": sync.source, "destination": sync.destination,
            "object": sync.object, "mode": sync.mode, "schedule": _schedule(sync),
            "paused": held.get(sync.name),
            "last_run": None if last is None else {
                "run_id": last.get("run_id"), "status": last.get("status"),
                "started_at": last.get("started_at"), "seconds": last.get("seconds"),
                "sent": rows_sent(last), "rejected": int(last.get("rejected") or 0)},
            "series": [{"run_id": r.get("run_id"), "started_at": r.get("started_at"),
                        "status": r.get("status"), "sent": rows_sent(r),
                        "rejected": int(r.get("rejected") or 0)}
                       for r in reversed(history)],
        })
    return out

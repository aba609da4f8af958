"""Paused syncs in a run: ``conn pause`` keeps a sync out of every run (``conn sync``,
``conn serve``, the UI's "Run now") until ``conn resume``; the run reports it as
``paused`` and records nothing. A dry run changes nothing, so a paused sync can still be
previewed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conn.runtime.report import RunInfo, SyncReport
from conn.state.paused import paused

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig


def paused_report(sync: Any, run: RunInfo, entry: dict[str, Any]) -> SyncReport:
    """The report of a sync (a :class:`conn.config.model.SyncConfig`) that a run skipped
    because it is paused: not stored in the history."""
    return SyncReport(name=sync.name, source=sync.source, destination=sync.destination,
                      object=sync.object, mode=sync.mode, run_id=run.run_id,
                      status="paused", error=f"paused since {entry.get('since')}; "
                      f"'conn resume {sync.name}' runs it again")


def paused_reports(project: Project, syncs: list[SyncConfig], run: RunInfo,
                   dry_run: bool) -> dict[str, SyncReport]:
    """The report of each of ``syncs`` that is paused, by name (none for a dry run)."""
    held = {} if dry_run else paused(project.state_dir)
    return {s.name: paused_report(s, run, held[s.name]) for s in syncs if s.name in held}

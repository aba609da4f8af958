"""``conn pause`` and ``conn resume``."""

from __future__ import annotations

from pathlib import Path

from conn.cli import output
from conn.cli.common import open_project


def pause_command(syncs: list[str], *, reason: str, resume: bool, project: Path | None,
                  json_out: bool) -> None:
    """Pause (or resume) each named sync; every name is checked before any is changed."""
    from conn.ops import syncs as ops
    from conn.ops.history import require_sync

    proj, _ = open_project(project, only=set())
    for name in syncs:
        require_sync(proj, name)
    results = [ops.resume(proj, n) if resume else ops.pause(proj, n, reason) for n in syncs]
    if json_out:
        output.print_json({"syncs": results})
        return
    for r in results:
        if resume:
            output.info(f"{r['sync']}: resumed" if r["was_paused"]
                        else f"{r['sync']}: was not paused")
        else:
            output.info(f"{r['sync']}: paused since {r['since']} (conn sync and conn serve "
                        f"skip it; 'conn resume {r['sync']}' undoes it)")

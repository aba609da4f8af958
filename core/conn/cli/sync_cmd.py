"""``conn sync``, ``conn retry`` and ``conn preview``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from conn import interrupt
from conn.cli import output
from conn.cli.common import open_project
from conn.config.model import Project, SyncConfig
from conn.errors import ConfigError
from conn.ops import syncs as ops
from conn.ops.syncs import validate_connectors
from conn.plugins import Registry
from conn.runtime.report import RunInfo, RunReport, SyncReport
from conn.runtime.runner import RunOptions
from conn.state.target import OnChange

if TYPE_CHECKING:
    from rich.progress import Progress

COLUMNS = ("sync", "status", "read", "consent denied", "inserted", "updated", "deleted",
           "unchanged", "rejected", "pending", "seconds")
#: The same, for terminals too narrow for the full headers.
SHORT = ("sync", "status", "read", "denied", "ins", "upd", "del", "unch", "rej", "pend",
         "secs")


def _row(s: SyncReport) -> list[Any]:
    return [s.name, s.status, s.rows_read, s.consent_denied, s.inserted, s.updated,
            s.deleted, s.unchanged, s.rejected, s.pending, s.seconds]


class _Progress:
    """A rich live progress line per sync on a terminal; nothing per batch when piped."""

    def __init__(self) -> None:
        self.tty = output.is_tty()
        self.bar: Progress | None = None
        self.tasks: dict[str, Any] = {}
        self.started = time.monotonic()

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.progress import (
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.table import Column

            # The figures come last and fold onto another line on a narrow terminal
            # rather than being cut: a count is never shown truncated.
            self.bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                                TimeElapsedColumn(),
                                TextColumn("{task.fields[figures]}",
                                           table_column=Column(overflow="fold")),
                                transient=False)
            self.bar.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.__exit__(exc_type, exc, tb)

    def __call__(self, rep: SyncReport, counts: dict[str, Any]) -> None:
        if self.bar is None:
            return
        figures = (f"read {rep.rows_read:,}  sent {rep.sent:,}  unchanged {rep.unchanged:,}  "
                   f"withheld {rep.consent_denied:,}  rejected {rep.rejected:,}")
        if rep.name not in self.tasks:
            self.tasks[rep.name] = self.bar.add_task(rep.name, total=None, figures=figures)
        self.bar.update(self.tasks[rep.name], figures=figures)


def _exit_code(report: RunReport) -> int:
    statuses = {s.status for s in report.syncs}
    if "interrupted" in statuses:
        return 130
    if "failed" in statuses:
        if any(s.error_type == "SyncLocked" for s in report.syncs):
            return 5
        return 1
    if "rejected" in statuses:
        return 4
    return 0


def print_report(report: RunReport, json_out: bool) -> None:
    if json_out:
        output.print_json(report.as_dict())
        return
    for s in report.syncs:
        if s.preview:
            output.info(f"--- {s.name}: first {len(s.preview)} request(s) that would be sent")
            output.print_json(s.preview)
    retry = bool(report.syncs) and all(s.rejected_only for s in report.syncs)
    title = ("conn retry (rejected rows only)" if retry else "conn sync") + (
        " (dry run: nothing sent)" if report.run.dry_run else "")
    output.table(title, COLUMNS, [_row(s) for s in report.syncs], short=SHORT)
    for s in report.syncs:
        if s.error:
            (output.info if s.status == "paused" else output.error)(f"{s.name}: {s.error}")
        if s.rejection_reasons:
            top = sorted(s.rejection_reasons.items(), key=lambda kv: -kv[1])[:5]
            for reason, n in top:
                output.info(f"{s.name}: {n} rejected: {reason}")
            output.info(f"see all: conn rejected {s.name}")
        for purpose, bases in (s.legal_bases or {}).items():
            by_basis: list[tuple[Any, int | None]] = (
                list(bases.items()) if isinstance(bases, dict) else [(bases, None)])
            for basis, rows in by_basis:
                if basis != "consent":
                    output.info(f"{s.name}: purpose {purpose!r}: {rows or 'rows'} processed "
                                f"under legal basis {basis!r} (no consent record needed)")


def run_sync(source: str, destination: str, names: list[str], *, dry_run: bool,
             full_resync: bool, preview: int, batch_rows: int | None, project: Path | None,
             json_out: bool, on_target_change: OnChange = None, follow: bool = False,
             new_experiment: bool = False) -> None:
    # Only the connectors these syncs use are loaded and validated: a broken or heavy
    # plugin elsewhere in conn.yml does not slow down or break this command.
    proj, registry = open_project(project, only=set())
    syncs = ops.syncs_between(proj, source, destination, names)
    options = RunOptions(dry_run=dry_run, full_resync=full_resync,
                         preview_rows=preview if dry_run else 0, batch_rows=batch_rows,
                         on_target_change=on_target_change, new_experiment=new_experiment)
    if follow:
        validate_connectors(proj, registry, syncs)
        report = _follow(proj, registry, syncs, options)
    else:
        with interrupt.handling(), _Progress() as progress:
            report = ops.run(proj, registry, syncs, options, progress)
    _finish(report, json_out)


def run_retry(sync: str, *, dry_run: bool, preview: int, project: Path | None,
              json_out: bool) -> None:
    """``conn retry SYNC``: the rows currently rejected for the sync, and only them."""
    proj, registry = open_project(project, only=set())
    options = RunOptions(dry_run=dry_run, preview_rows=preview if dry_run else 0)
    with interrupt.handling(), _Progress() as progress:
        report = ops.retry_rejected(proj, registry, sync, options, progress)
    _finish(report, json_out)


def _finish(report: RunReport, json_out: bool) -> None:
    """Print a run's report; exit with its code (see ``conn sync --help``)."""
    print_report(report, json_out)
    if not json_out and not output.is_tty():
        sys.stdout.flush()
    code = _exit_code(report)
    if code:
        sys.exit(code)


def _follow(proj: Project, registry: Registry, syncs: list[SyncConfig],
            options: RunOptions) -> RunReport:
    """``conn sync --follow``: one streaming sync in the foreground until Ctrl-C or
    SIGTERM, which drain it (the micro-batch in flight is answered and committed)."""
    import threading

    from conn.runtime.streaming import follow

    if len(syncs) != 1:
        raise ConfigError(f"--follow runs one sync; name it with --sync (syncs: "
                          f"{', '.join(s.name for s in syncs)})", file=str(proj.file),
                          path="syncs")
    sync = syncs[0]
    output.info(f"following {sync.name} (Ctrl-C or SIGTERM to stop)")

    def on_batch(rep: SyncReport, info: dict[str, Any]) -> None:
        if output.is_tty():
            output.info(f"{sync.name}: {info['rows']} change(s); read {rep.rows_read:,} "
                        f"sent {rep.sent:,} withheld {rep.consent_denied:,}")

    with interrupt.handling():
        rep = follow(proj, sync.name, threading.Event(), on_batch, registry=registry,
                     options=options)
    report = RunReport(RunInfo.new(proj.dir, [sync.name]))
    report.syncs.append(rep)
    return report


def run_preview(sync_name: str, *, rows: int, project: Path | None, json_out: bool) -> None:
    proj, registry = open_project(project, only=set())
    result = ops.preview(proj, registry, sync_name, rows)
    if json_out:
        output.print_json({k: result[k] for k in ("sync", "status", "requests", "error")})
    else:
        output.print_json(result["requests"])
        if result["error"]:
            output.error(result["error"])
    if result["status"] == "failed":
        sys.exit(1)

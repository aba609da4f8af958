"""What ``conn serve`` prints: one line per event, on stdout.

Three forms: rich (colours, on a terminal), plain ``TIME EVENT key=value ...`` lines when
piped, and with ``--json`` one JSON object per line (``{"event": ..., "time": ...,
...}``) for machines. Events: ``serving``, ``scheduled`` (one per job), ``unscheduled``,
``run_started``, ``run_finished``, ``run_skipped``, ``scheduler_failed``, ``draining``,
``stopped`` (docs/realtime.md).
Everything printed passes through secret redaction; lines are flushed as they are
written, so a supervisor's log sees each event at once.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

from conn.secrets import redact, redact_obj

_STATUS_STYLE = {"ok": "green", "rejected": "yellow", "failed": "red", "refused": "red",
                 "interrupted": "yellow"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain_value(v: Any) -> str:
    if isinstance(v, dict):
        return ",".join(f"{k}:{_plain_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ",".join(_plain_value(x) for x in v)
    text = "" if v is None else str(v)
    return json.dumps(text) if (" " in text or not text) else text


class Events:
    """Prints events in one of the forms: ``mode`` is ``rich``, ``plain`` or ``json``;
    None picks rich on a terminal, plain otherwise."""

    def __init__(self, mode: str | None = None, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.mode = mode or ("rich" if self.stream.isatty() else "plain")
        self._lock = threading.Lock()
        self._console: Any = None
        if self.mode == "rich":
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def __call__(self, event: str, **fields: Any) -> None:
        fields = redact_obj({k: v for k, v in fields.items() if v is not None})
        with self._lock:
            if self.mode == "json":
                line = json.dumps({"event": event, "time": _now(), **fields}, default=str)
                self.stream.write(line + "\n")
            elif self.mode == "rich":
                self._console.print(self._rich(event, fields))
            else:
                parts = " ".join(f"{k}={_plain_value(v)}" for k, v in fields.items())
                self.stream.write(redact(f"{_now()} {event} {parts}".rstrip()) + "\n")
            self.stream.flush()

    def _rich(self, event: str, f: dict[str, Any]) -> str:
        from rich.markup import escape

        t = datetime.now(UTC).strftime("%H:%M:%S")
        sync = escape(str(f.get("sync", "")))
        if event == "serving":
            return (f"[bold]conn serve[/] {escape(str(f.get('project', '')))}: "
                    f"[cyan]{escape(str(f.get('url')))}[/]/healthz, /metrics "
                    f"(pid {f.get('pid')})")
        if event == "scheduled":
            return (f"  [bold]{sync}[/] {escape(str(f.get('schedule')))}, next run "
                    f"{escape(str(f.get('next_run') or '-'))}")
        if event == "unscheduled":
            return f"  [dim]{escape(str(f.get('note')))}: {escape(', '.join(f['syncs']))}[/]"
        if event == "run_finished":
            style = _STATUS_STYLE.get(f.get("status", ""), "white")
            rows = f.get("rows") or {}
            text = (f"{t} [{style}]{escape(str(f.get('status')))}[/] [bold]{sync}[/] "
                    f"read {rows.get('read', 0):,} sent {rows.get('sent', 0):,} rejected "
                    f"{rows.get('rejected', 0):,} withheld {f.get('withheld', 0):,} in "
                    f"{f.get('seconds', 0)} s")
            if f.get("error"):
                text += f"\n    [red]{escape(str(f['error']))}[/]"
            return text
        if event == "run_started":
            return f"{t} [dim]start[/] [bold]{sync}[/]"
        if event == "run_skipped":
            return f"{t} [yellow]skip[/] [bold]{sync}[/]: {escape(str(f.get('reason')))}"
        rest = " ".join(f"{k}={escape(str(v))}" for k, v in f.items())
        return f"{t} [bold]{escape(event)}[/] {rest}"

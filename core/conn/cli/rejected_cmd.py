"""``conn rejected`` (a sync's rejected rows, with the vendor's exchange) and ``conn
retry`` (send those rows again, and only them). Typer only at import; the work is in
:mod:`conn.ops`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

_Project = Annotated[Optional[Path], typer.Option(  # noqa: UP045 - typer needs Optional
    "--project", "-p", help="conn.yml or its folder (default: search upwards from the "
    "current folder; env CONN_PROJECT).")]
_Json = Annotated[bool, typer.Option("--json", help="Print one JSON object for machines "
                  "(errors too: {\"ok\": false, \"error\": {...}}).")]
_Sync = Annotated[str, typer.Argument(help="Sync name from conn.yml.")]


def rejected(
    sync_name: _Sync,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 100,
    key: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--key", "-k", help="Only rows whose key contains this text (any case).")] = None,
    excerpt: Annotated[bool, typer.Option(
        "--excerpt", "-x", help="Also print each row's exchange with the vendor: the "
        "row's part of the request and the start of the response.")] = False,
    project: _Project = None,
    json_out: _Json = False,
) -> None:
    """List a sync's rejected rows with the reason and the vendor exchange that rejected
    them (method, path, status); 'conn retry SYNC' sends them again, and every run
    retries them until accepted or changed."""
    import contextlib

    from conn.cli import output
    from conn.cli.common import open_project
    from conn.ops.history import rejected as rejected_rows
    from conn.runtime.runner import open_state_store

    proj, registry = open_project(project, only=set())
    with contextlib.closing(open_state_store(proj, registry)) as store:
        rows = rejected_rows(proj, store, sync_name, limit=limit, key=key)
    if json_out:
        output.print_json({"sync": sync_name, "rejected": rows})
        return
    if not rows:
        output.info(f"{sync_name}: no rejected rows")
        return
    output.table(f"rejected rows of {sync_name}",
                 ["key", "reason", "op", "run", "since", "tries", "exchange"],
                 [[_key(r), r.get("reason"), r.get("op"), r.get("run_id"),
                   r.get("since") or r.get("at"), r.get("attempts"),
                   exchange_line(r.get("excerpt"))] for r in rows])
    for r in rows if excerpt else ():
        ex = r.get("excerpt")
        if ex:
            output.info(f"\n{_key(r)}: {exchange_line(ex)}\n  request:  "
                        f"{ex.get('request') or '-'}\n  response: {ex.get('response') or '-'}")


def _key(row: dict[str, Any]) -> Any:
    return "(none)" if row.get("key") is None else row.get("key")


def exchange_line(ex: dict[str, Any] | None) -> str:
    """``POST /v3/contacts -> HTTP 400`` for an excerpt; empty without one."""
    if not ex:
        return ""
    return f"{ex.get('method', '')} {ex.get('path', '')} -> HTTP {ex.get('status', '?')}"


def retry(
    sync_name: _Sync,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the requests that would "
                       "be sent (secrets redacted); send and store nothing.")] = False,
    preview: Annotated[int, typer.Option("--preview", help="With --dry-run: how many "
                       "records to show.")] = 5,
    project: _Project = None,
    json_out: _Json = False,
) -> None:
    """Send again only the rows currently rejected for a sync ('conn rejected SYNC'),
    through the same consent gate, mapping and planner as 'conn sync': a person who
    withdrew consent is not sent, and other changes of the source wait for the next
    run. The run is recorded like any other. Exit codes as 'conn sync'."""
    from conn.cli.sync_cmd import run_retry

    run_retry(sync_name, dry_run=dry_run, preview=preview, project=project,
              json_out=json_out)

"""``conn triggers [NAME]``: each trigger with its definition, the events it fired and
delivered, and its recent firings by key (the work in :mod:`conn.ops.triggers`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

_Project = Annotated[Optional[Path], typer.Option(  # noqa: UP045 - typer needs Optional
    "--project", "-p", help="conn.yml or its folder (default: search upwards).")]


def triggers_command(
        name: Annotated[Optional[str], typer.Argument(  # noqa: UP045
            help="A trigger under 'triggers:' (default: all).")] = None,
        recent: Annotated[int, typer.Option(
            "--recent", min=0, max=10_000, help="Latest firings shown per sync.")] = 20,
        project: _Project = None,
        json_out: Annotated[bool, typer.Option(
            "--json", help="Print one JSON object for machines.")] = False) -> None:
    """Triggers (docs/traits.md): definition, events fired and delivered per sync, and
    the latest firings by key (when, how many times, the last value seen).

    Exit codes: 0 listed; 3 configuration error (e.g. no such trigger)."""
    from conn.cli.common import open_project
    from conn.cli.output import info, print_json, table
    from conn.errors import ConfigError
    from conn.ops import triggers as ops
    from conn.runtime.runner import open_state_store

    proj, registry = open_project(project, only=set())
    with contextlib.closing(open_state_store(proj, registry)) as store:
        if name is None:
            found = ops.triggers(proj, store, recent=recent)
        else:
            one = ops.trigger(proj, store, name, recent=recent)
            if one is None:
                raise ConfigError(f"no trigger named {name!r} (declared: "
                                  f"{', '.join(proj.raw.get('triggers') or {}) or 'none'})",
                                  file=str(proj.file), path="triggers")
            found = [one]
    if json_out:
        print_json({"ok": True, "triggers": found})
        return
    rows = []
    for t in found:
        text = ", ".join(f"{k}: {v}" for k, v in t["definition"].items())
        rows += [[t["name"], text, s["sync"], s["events_fired"], s["events_delivered"],
                  s["keys"], s["armed"], s["last_fired_at"] or ""] for s in t["syncs"]]
        if not t["syncs"]:
            rows.append([t["name"], text, "(no sync)", 0, 0, 0, 0, ""])
    table("triggers", ["trigger", "definition", "sync", "fired", "delivered", "keys",
                       "armed", "last fired"], rows)
    for t in found:
        for s in t["syncs"]:
            if s["recent"]:
                table(f"latest firings of {t['name']} ({s['sync']})",
                      ["key", "fired at", "events", "last value"],
                      [[r["key"], r["fired_at"], r["events"], r["value"]]
                       for r in s["recent"]])
    if not found:
        info("no triggers: declare one under 'triggers:' (docs/traits.md)")

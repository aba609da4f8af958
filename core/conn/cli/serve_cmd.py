"""``conn serve``: turns the command's options into :func:`conn.serve.service.serve`."""

from __future__ import annotations

import sys
from pathlib import Path

from conn.cli.common import open_project
from conn.cli.sync_cmd import validate_connectors


def run_serve(*, project: Path | None, host: str, port: int, drain_seconds: float,
              json_out: bool) -> None:
    from conn.serve.events import Events
    from conn.serve.service import serve

    proj, registry = open_project(project, only=set())
    scheduled = [s for s in proj.syncs.values() if s.schedule is not None]
    # Every plugin a run will need is loaded (and its config checked) now, on the main
    # thread: a typo stops serve at start, not in a worker an hour later.
    validate_connectors(proj, registry, scheduled)
    registry.load_observers()
    events = Events("json" if json_out else None)
    code = serve(proj, registry, events, host=host, port=port, drain_seconds=drain_seconds)
    if code:
        sys.exit(code)

"""``conn serve``: turns the command's options into :func:`conn.serve.service.serve`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conn.cli.common import open_project
from conn.ops.syncs import validate_connectors


def run_serve(*, project: Path | None, host: str, port: int, drain_seconds: float,
              json_out: bool, ui: bool = True, ui_token: str | None = None) -> None:
    from conn.serve.events import Events
    from conn.serve.service import serve

    proj, registry = open_project(project, only=set())
    scheduled = [s for s in proj.syncs.values() if s.schedule is not None]
    # Every plugin a run will need is loaded (and its config checked) now, on the main
    # thread: a typo stops serve at start, not in a worker an hour later.
    validate_connectors(proj, registry, scheduled)
    registry.load_observers()
    events = Events("json" if json_out else None)
    mount = _ui_mount(proj.file, registry, host, ui_token, events) if ui else None
    code = serve(proj, registry, events, host=host, port=port, drain_seconds=drain_seconds,
                 mount=mount)
    if code:
        sys.exit(code)


def _ui_mount(project: Path, registry: Any, host: str, token: str | None, events: Any
              ) -> Callable[[int], Callable[[Any, str], None]] | None:
    """The web UI on serve's port, under the same rules as ``conn ui``: beyond loopback
    only with a token (else it is left out, and serve says so)."""
    from conn.ui.guard import Guard, is_loopback

    if not is_loopback(host) and not token:
        events("ui_disabled", reason=f"listening on {host} without --ui-token; the web "
               f"UI needs a token beyond loopback")
        return None

    def mount(port: int) -> Callable[[Any, str], None]:
        from conn.ui.app import UiApp
        from conn.ui.server import answer

        app = UiApp(project, registry, Guard(port, token))
        return lambda handler, method: answer(handler, app, method)

    return mount

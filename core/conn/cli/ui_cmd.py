"""``conn ui``: serve the web UI of the project until Ctrl-C."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from conn.cli import output
from conn.cli.common import open_project
from conn.errors import ConfigError


def run_ui(*, project: Path | None, host: str, port: int, token: str | None) -> None:
    from conn.ui.app import UiApp
    from conn.ui.guard import Guard, check_bind
    from conn.ui.server import UiServer

    check_bind(host, token)
    proj, registry = open_project(project, only=set())  # conn.yml must load now
    registry.load_observers()
    try:
        server = UiServer(host, port, lambda bound: UiApp(proj.file, registry,
                                                          Guard(bound, token)))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                          f"another --port (0 picks a free one)") from None
    server.start()
    # The token is never printed: the user has it; the URL says where it goes.
    hint = " (append #token=YOUR_TOKEN to open it)" if token else ""
    output.info(f"conn ui: {server.url}/ for {proj.file}{hint}; Ctrl-C to stop")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass  # the way to stop it; runs it started end as Ctrl-C'd syncs do
    finally:
        server.close()

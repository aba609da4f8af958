"""What most commands do first: load the project and the plugins it needs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from conn import secrets
from conn.config import Project, load_project
from conn.plugins import Registry, get_registry


def setup_logging() -> None:
    level = os.environ.get("CONN_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    secrets.install_log_redaction()


def open_project(project: Path | None, only: set[str] | None = None
                 ) -> tuple[Project, Registry]:
    """Load conn.yml, validating the config of the named connectors (all when None)."""
    setup_logging()
    registry = get_registry()
    proj = load_project(project, registry=registry,
                        validate_plugins=only if only is not None else True)
    return proj, registry

"""One exception root for conn, grouped by what the user should do about it.

Each class carries the process exit code the CLI uses when it ends a command, so that
cron jobs and orchestrators can tell a config mistake from a flaky destination.
"""

from __future__ import annotations

from typing import Any


class ConnError(Exception):
    """Root of every error conn raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(ConnError):
    """Fix the configuration: the message names the file, the path inside it and what was
    expected."""

    exit_code = 3

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None):
        self.file = file
        self.path = path
        self.detail = message
        where = ""
        if file and path:
            where = f"{file}: {path}: "
        elif file:
            where = f"{file}: "
        elif path:
            where = f"{path}: "
        super().__init__(f"{where}{message}")


class ConfigErrors(ConfigError):
    """Several configuration problems found at once (``conn check`` shows them all).
    The exit code is a plugin error's (6) when every problem is a missing plugin, a
    configuration error's (3) otherwise."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{len(errors)} configuration problem(s):\n{lines}")
        self.exit_code = exit_code_of(errors)


class PluginError(ConnError):
    """A plugin is missing, broken or incompatible: install, upgrade or remove it."""

    exit_code = 6


class PluginNotFound(PluginError, ConfigError):
    """A connector's ``type`` names no installed (or loadable) plugin: reported like a
    configuration problem (file and path), with a plugin error's exit code."""


def exit_code_of(errors: list[ConfigError] | list[ConnError]) -> int:
    """The exit code for a set of configuration problems: 6 when all are missing
    plugins (install them first), else 3."""
    if errors and all(isinstance(e, PluginError) for e in errors):
        return PluginError.exit_code
    return ConfigError.exit_code


class CheckFailed(ConnError):
    """A connection check failed (bad credentials, unreachable host)."""

    exit_code = 7


class RetryLater(ConnError):
    """A transient failure (rate limit, 5xx, timeout) that outlived the retries; nothing
    acknowledged is lost and the next run resumes."""

    exit_code = 1


class SyncLocked(ConnError):
    """Another run of the same sync holds the lock."""

    exit_code = 5


class StateError(ConnError):
    """The state store is unreadable, foreign or from a newer conn: never silently reset."""

    exit_code = 8


class RowsRejected(ConnError):
    """The run finished but the destination or validation rejected some rows (kept for
    retry)."""

    exit_code = 4


def error_object(exc: BaseException, exit_code: int, message: str) -> dict[str, Any]:
    """What ``--json`` prints when a command fails: ``{"ok": false, "error": {...}}`` with
    the error's type, exit code and message; a configuration error adds its file and
    path, several add ``problems`` (each with file, path and message)."""
    err: dict[str, Any] = {"type": type(exc).__name__, "exit_code": exit_code,
                           "message": message}
    if isinstance(exc, ConfigErrors):
        err["problems"] = [{"file": e.file, "path": e.path, "message": e.detail,
                            "type": type(e).__name__} for e in exc.errors]
    elif isinstance(exc, ConfigError):
        err.update(file=exc.file, path=exc.path, detail=exc.detail)
    return {"ok": False, "error": err}

"""Terminal output: rich tables and progress on a terminal, plain lines when piped,
JSON for machines. Everything printed passes through secret redaction."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from conn.secrets import redact, redact_obj


def is_tty() -> bool:
    return sys.stdout.isatty()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(redact_obj(obj), indent=2, default=str) + "\n")


def error_object(exc: BaseException, exit_code: int, message: str) -> dict[str, Any]:
    """What ``--json`` prints when a command fails: ``{"ok": false, "error": {...}}`` with
    the error's type, exit code and message; a configuration error adds its file and
    path, several add ``problems`` (each with file, path and message)."""
    from conn.errors import ConfigError, ConfigErrors

    err: dict[str, Any] = {"type": type(exc).__name__, "exit_code": exit_code,
                           "message": message}
    if isinstance(exc, ConfigErrors):
        err["problems"] = [{"file": e.file, "path": e.path, "message": e.detail,
                            "type": type(e).__name__} for e in exc.errors]
    elif isinstance(exc, ConfigError):
        err.update(file=exc.file, path=exc.path, detail=exc.detail)
    return {"ok": False, "error": err}


def error(message: str) -> None:
    """An error line on stderr (red on a terminal)."""
    text = redact(message)
    if sys.stderr.isatty():
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {text}", highlight=False,
                                   markup=True, soft_wrap=True)
    else:
        sys.stderr.write(f"error: {text}\n")


def info(message: str) -> None:
    text = redact(message)
    if is_tty():
        from rich.console import Console

        Console().print(text, highlight=False)
    else:
        sys.stdout.write(text + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on a terminal; tab-separated lines with a header when piped."""
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, title_justify="left")
        for c in columns:
            numeric = rows and all(isinstance(r[columns.index(c)], int | float) for r in rows)
            t.add_column(c, justify="right" if numeric else "left")
        for r in rows:
            t.add_row(*(redact("" if v is None else str(v)) for v in r))
        Console().print(t)
    else:
        sys.stdout.write("\t".join(columns) + "\n")
        for r in rows:
            sys.stdout.write("\t".join(redact("" if v is None else str(v)) for v in r) + "\n")

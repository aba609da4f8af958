"""Running Singer connectors as subprocesses: the argv of a tap or target, a short name
for messages, private files for ``--config``/``--catalog``/``--state``, and the end of a
connector's log for errors. Used by the ``singer`` source (which runs a tap) and the
``singer`` destination (which runs a target)."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from typing import Any

from conn.secrets import redact
from conn.singer.protocol import dumps


def resolve_command(command: str | Sequence[str]) -> list[str]:
    """argv of a Singer executable: a path or name on PATH (a string holding spaces that is
    not an existing file is split like a shell would), or an argv list."""
    if isinstance(command, str):
        if os.path.exists(command) or shutil.which(command):
            return [command]
        return shlex.split(command)
    return [str(c) for c in command]


def connector_name(argv: Sequence[str]) -> str:
    """A short name for messages: the executable's base name (``tap-github``), or the
    module of ``python -m module``."""
    if len(argv) >= 3 and argv[1] == "-m":
        return argv[2]
    base = os.path.basename(argv[0]) if argv else "singer"
    if base.startswith("python") and len(argv) >= 2:
        return os.path.basename(argv[1])
    return base


def write_private_json(path: Any, obj: Any) -> str:
    """Write ``obj`` as JSON to ``path`` readable by the owner only; returns the path."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(dumps(obj))
    return str(path)


def tail(path: Any, limit: int = 3000) -> str:
    """The last ``limit`` characters of a log file (secrets redacted)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit * 4))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return redact(text[-limit:].strip())

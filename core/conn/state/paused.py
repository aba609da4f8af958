"""Paused syncs: ``conn pause`` and ``conn resume`` (and the UI's buttons) write here;
every run (``conn sync``, ``conn serve``, ``conn ui``) reads it before a sync starts.

Kept in the project's state folder as ``.conn/paused.json`` (``{sync: {"since": ISO
8601 UTC, "reason": text}}``), whatever the state backend: pausing is a decision about
this project's runs, not about what a destination acknowledged, and it must be readable
without opening a database another run may hold. Written atomically (a temporary file
renamed over the old one), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE = "paused.json"
#: Two threads of one process (a UI's button and its scheduler) never interleave writes.
_LOCK = threading.Lock()


def paused(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Every paused sync with when (and why) it was paused; ``{}`` when none is."""
    try:
        data = json.loads((state_dir / FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        from conn.errors import StateError

        raise StateError(f"{state_dir / FILE}: cannot read the paused syncs ({exc}); fix "
                         f"or delete the file (deleting it resumes every sync)") from None
    return {str(k): dict(v) for k, v in data.items()} if isinstance(data, dict) else {}


def is_paused(state_dir: Path, sync: str) -> bool:
    return sync in paused(state_dir)


def _write(state_dir: Path, data: dict[str, dict[str, Any]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".paused.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, state_dir / FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pause(state_dir: Path, sync: str, reason: str = "") -> dict[str, Any]:
    """Pause ``sync`` (again: keeps the first time); its entry."""
    with _LOCK:
        data = paused(state_dir)
        if sync not in data:
            data[sync] = {"since": datetime.now(UTC).isoformat(timespec="seconds")
                          .replace("+00:00", "Z"), "reason": reason}
            _write(state_dir, data)
        return data[sync]


def resume(state_dir: Path, sync: str) -> bool:
    """Resume ``sync``; False when it was not paused."""
    with _LOCK:
        data = paused(state_dir)
        if data.pop(sync, None) is None:
            return False
        _write(state_dir, data)
        return True

"""Opening DuckDB state files: the settings of a sync's file, the shared in-memory
database the run history is attached to, and retries while another process holds a file.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from conn.errors import StateError
from conn.state.locks import process_lock
from conn.state.planner import row_hashes

T = TypeVar("T")

#: Serialises the run history's attach/detach: one file is attached once at a time.
_RUNS_LOCK = threading.Lock()

_BUSY_RETRIES = 40
#: DuckDB's memory budget for a state file connection. Its buffer pool keeps the blocks
#: of the records a run writes up to this budget: at 512 MB a 10M-row first sync peaked
#: at ~800 MB, at 256 MB ~745 MB, in the same time (1M rows: no change).
MEMORY_LIMIT = "256MB"
#: WAL size that triggers a checkpoint. DuckDB's 16 MB default checkpointed every other
#: commit of a 100k-row batch, re-writing the table's last row group each time (7M rows
#: committed in 87,500-row batches: 9.3 s at 16 MB, 7.2 s at 64 MB, same peak memory).
CHECKPOINT_THRESHOLD = "64MB"
#: State files are written uncompressed: key ids and hashes are random 64-bit values that
#: no codec shrinks, and DuckDB's per-segment compression analysis cost ~0.1-0.2 s of
#: checkpoint per 700,000 records (1M first sync: 1.94 -> 1.74 s) for files ~40% smaller
#: (700,000 records: 15 MB compressed, 24 MB not).
COMPRESSION = "uncompressed"


def connect(path: Path, *, read_only: bool = False,
            hot: bool = True) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, turning DuckDB's errors into :class:`StateError`; retries for a
    few seconds while another process holds the file. ``hot``: a sync's state file, with
    the write settings above (the run-history file keeps DuckDB's defaults)."""
    # A bounded memory budget: the end-of-run compaction of a first 10M-row run spills to
    # disk instead of growing the process.
    config: dict[str, Any] = {"memory_limit": MEMORY_LIMIT}
    if hot:
        config.update(checkpoint_threshold=CHECKPOINT_THRESHOLD, force_compression=COMPRESSION)
    return _retry_busy(path, lambda: duckdb.connect(str(path), read_only=read_only,
                                                     config=config))


@contextlib.contextmanager
def runs_lock(root: Path) -> Iterator[None]:
    """Hold a store's run-history file (``root/state/runs.duckdb``) for this thread and
    process: its rewrite after a purge (``conn forget``) replaces the file, which a
    writer holding the old one would miss."""
    with _RUNS_LOCK, process_lock(root / "locks" / "runs.lock"):
        yield


def attach(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection to the DuckDB file ``path`` attached to the process's shared
    in-memory database (and made its default): ~1 ms instead of ~12 ms for a database of
    its own, for small files that need no settings (the run history). Detach it with
    :func:`detach`; callers serialise attaching one file."""
    con = row_hashes.connect()
    alias = f"conn_{uuid.uuid4().hex[:12]}"
    quoted = str(path).replace("'", "''")
    try:
        _retry_busy(path, lambda: con.execute(f"ATTACH '{quoted}' AS {alias}"))
        con.execute(f"USE {alias}")
    except BaseException:
        con.close()
        raise
    return con


def detach(con: duckdb.DuckDBPyConnection) -> None:
    """Detach what :func:`attach` attached (DuckDB checkpoints it) and close ``con``."""
    try:
        with contextlib.suppress(duckdb.Error):
            con.rollback()  # a transaction an error left open would keep it attached
        alias = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute("USE memory")
        con.execute(f"DETACH {alias}")
    finally:
        con.close()


def _retry_busy(path: Path, open_file: Callable[[], T]) -> T:
    """``open_file()``, retried for a few seconds while another process holds ``path``;
    DuckDB's errors become :class:`StateError`."""
    for attempt in range(_BUSY_RETRIES):
        try:
            return open_file()
        except duckdb.Error as exc:
            text = str(exc)
            if "lock" in text.lower() and attempt < _BUSY_RETRIES - 1:
                time.sleep(0.05 * min(attempt + 1, 5))
                continue
            if "lock" in text.lower():
                raise StateError(f"{path} is in use by another process (a sync running?); "
                                 f"try again when it finishes. ({text.splitlines()[0]})"
                                 ) from exc
            raise StateError(f"cannot open state file {path}: {text.splitlines()[0]}. It is "
                             "corrupted or not a DuckDB file; conn will not reset it. "
                             "Restore it from a backup, or move it away to start over "
                             "(the next run then re-sends every row).") from exc
    raise AssertionError("unreachable")


def query(con: duckdb.DuckDBPyConnection, path: Path, sql: str,
          params: list[Any] | None = None) -> Any:
    """Run ``sql`` on a state file's connection; a DuckDB error names the file."""
    try:
        return con.execute(sql, params or [])
    except duckdb.Error as exc:
        raise StateError(f"state file {path}: {exc}") from exc

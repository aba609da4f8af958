"""The commit journal of a sync's DuckDB file: small commits made durable cheaply.

A streaming run commits its acknowledgements many times a second, a window of requests
at a time (:mod:`conn.runtime.commit_buffer`). Each DuckDB transaction costs several
milliseconds of CPU whatever its size (its statements and its write-ahead log: about 6 ms
for 400 rows here, a third of a follower's CPU during a flood; docs/performance.md,
``pg_stream``), while appending the same rows to a file and ``fsync``-ing it costs about
0.2 ms. So while grouping is on (:meth:`Storage.group_commits`), each commit and each
source bookmark is one frame appended to ``<sync>.duckdb.journal`` and synced before
:meth:`~JournaledStorage.commit` returns: as durable as a DuckDB commit. The frames are
folded into the DuckDB file in one transaction at least once a second
(:data:`FOLD_SECONDS`), every :data:`FOLD_ROWS` rows, before anything reads the
file, and at the end of the run; then the journal is emptied.

A frame is ``<meta length u32><rows length u64><crc32 u32>``, then the meta (JSON: kind,
sequence number, operation, run, time, match type) and the rows (an Arrow IPC stream, the
``changes`` columns). A crash leaves at most one torn frame at the end: its commit never
returned, so nothing was confirmed to the source for it, and it is dropped.
:func:`replay` folds what a crashed run left at the next open of the file, skipping the
commits a fold had already stored (their sequence numbers are in ``commits``): a crash
between a fold's transaction and the journal's truncation repeats nothing.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.ipc as ipc

from conn.errors import StateError
from conn.state.contracts import Storage

if TYPE_CHECKING:
    import duckdb
    import numpy as np

    from conn.state.backends.duckdb.store import DuckDBStorage
    from conn.state.planner.sorted_state import LayeredState, SortedState

T = TypeVar("T")

#: Fold the journal into the DuckDB file at least this often while commits arrive.
FOLD_SECONDS = 1.0
#: ... and once this many rows wait in it.
FOLD_ROWS = 50_000

_HEAD = struct.Struct("<IQI")
#: Fold once this many frames wait, whatever their rows (bookmarks of a quiet stream).
FOLD_FRAMES = 1_000

Query = Callable[..., Any]


def path_of(db: Path) -> Path:
    """The journal next to a sync's state file."""
    return db.with_name(db.name + ".journal")


@dataclass
class Entry:
    """One journaled write: a commit (``meta['kind'] == 'commit'``, with its ``rows``
    as inserted into ``changes``) or a source bookmark (``'source'``)."""

    meta: dict[str, Any]
    rows: pa.Table | None = None

    def encode(self) -> bytes:
        meta = json.dumps(self.meta, separators=(",", ":")).encode()
        body = b""
        if self.rows is not None:
            sink = pa.BufferOutputStream()
            with ipc.new_stream(sink, self.rows.schema) as writer:
                writer.write_table(self.rows)
            body = sink.getvalue().to_pybytes()
        return _HEAD.pack(len(meta), len(body), zlib.crc32(body, zlib.crc32(meta))) + \
            meta + body


def read(path: Path) -> tuple[list[Entry], int]:
    """The whole frames of a journal and the length they take (a torn or damaged frame
    ends it: what follows was never confirmed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    entries, at = [], 0
    while at + _HEAD.size <= len(data):
        n_meta, n_body, crc = _HEAD.unpack_from(data, at)
        start, end = at + _HEAD.size, at + _HEAD.size + n_meta + n_body
        if end > len(data) or zlib.crc32(data[start + n_meta:end],
                                         zlib.crc32(data[start:start + n_meta])) != crc:
            break
        meta = json.loads(data[start:start + n_meta])
        rows = ipc.open_stream(pa.py_buffer(data[start + n_meta:end])).read_all() \
            if n_body else None
        entries.append(Entry(meta, rows))
        at = end
    return entries, at


def fold(con: duckdb.DuckDBPyConnection, q: Query, entries: list[Entry]) -> None:
    """Store ``entries`` in the DuckDB file of ``con`` (``q`` runs a statement), in one
    transaction; commits whose sequence number is already there are skipped."""
    stored = int(q("SELECT coalesce(max(seq), 0) FROM commits").fetchall()[0][0])
    commits = [e for e in entries if e.meta["kind"] == "commit" and e.meta["seq"] > stored]
    sources = [e for e in entries if e.meta["kind"] == "source"]
    if not commits and not sources:
        return
    if commits:  # registered outside the transaction: a failed one cannot unregister
        con.register("_journal", pa.table({
            "seq": [e.meta["seq"] for e in commits], "op": [e.meta["op"] for e in commits],
            "run_id": [e.meta["run_id"] for e in commits],
            "at_s": [e.meta["at"] for e in commits],
            "mv_is_key": [e.meta["mv_is_key"] for e in commits],
            "match_type": pa.array([e.meta["match_type"] for e in commits], pa.string())}))
    try:
        con.begin()
        try:
            if commits:
                q("INSERT INTO commits SELECT seq, op, run_id, "
                  "to_timestamp(at_s)::TIMESTAMP, mv_is_key, match_type FROM _journal")
                rows = [e.rows for e in commits if e.rows is not None and e.rows.num_rows]
                if rows:
                    con.from_arrow(pa.concat_tables(rows)).insert_into("changes")
                # As a commit does: the keys' rejections of earlier runs are replaced.
                q("""DELETE FROM rejections WHERE EXISTS (SELECT 1 FROM changes ch JOIN
                    commits c USING (seq) WHERE ch.seq BETWEEN ? AND ? AND ch.kid =
                    rejections.kid AND c.run_id <> rejections.run_id)""",
                  [commits[0].meta["seq"], commits[-1].meta["seq"]])
            if sources:
                last = sources[-1].meta
                q("INSERT OR REPLACE INTO source_state VALUES (1, ?, ?, "
                  "to_timestamp(?)::TIMESTAMP)", [last["value"], last["run_id"], last["at"]])
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        if commits:
            con.unregister("_journal")


def replay(con: duckdb.DuckDBPyConnection, q: Query, db: Path) -> None:
    """Fold what a crashed run left in the journal of ``db`` (opened for writing as
    ``con``, before anything reads it), then empty the journal."""
    path = path_of(db)
    entries, _ = read(path)
    if entries:
        fold(con, q, entries)
    if path.exists():
        _truncate(path)


def pending(db: Path) -> bool:
    """Whether a journal holds frames not yet folded into ``db``."""
    try:
        return path_of(db).stat().st_size > 0
    except FileNotFoundError:
        return False


def _truncate(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        _empty(fd)
    finally:
        os.close(fd)


def _empty(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.fsync(fd)


@dataclass
class _Open:
    fd: int
    entries: list[Entry] = field(default_factory=list)
    rows: int = 0
    since: float = 0.0


class JournaledStorage(Storage):
    """A :class:`DuckDBStorage` whose commits and bookmarks, once :meth:`group_commits`
    was called, go to the journal (see the module) and are folded into the file later.
    Every other call folds first, so what it reads or writes sees every commit; all of
    them hold one lock, so a reader of another thread (:mod:`.shared`) folding the
    journal never meets a commit half-way."""

    def __init__(self, inner: DuckDBStorage) -> None:
        self.inner = inner
        self._lock = threading.RLock()
        self._open: _Open | None = None

    @property
    def path(self) -> Path:
        return self.inner.path

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The file's connection, with the journal folded (for readers of this process)."""
        self.settle()
        return self.inner.con

    def group_commits(self) -> None:
        """Journal the commits and bookmarks from now on (see the module)."""
        with self._lock:
            if self._open is None:
                path = path_of(self.inner.path)
                self._open = _Open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                           0o600))

    def settle(self) -> None:
        """Fold the journal into the file now."""
        with self._lock:
            j = self._open
            if j is None or not j.entries:
                return
            fold(self.inner.con, self.inner._q, j.entries)
            j.entries, j.rows = [], 0
            self._io(_empty, j.fd)

    def _append(self, entry: Entry) -> None:
        j = self._open
        assert j is not None
        self._io(os.write, j.fd, entry.encode())  # a disk full: the commit did not happen
        self._io(os.fsync, j.fd)
        if not j.entries:
            j.since = time.monotonic()
        j.entries.append(entry)
        j.rows += entry.rows.num_rows if entry.rows is not None else 0
        if j.rows >= FOLD_ROWS or len(j.entries) >= FOLD_FRAMES or \
                time.monotonic() - j.since >= FOLD_SECONDS:
            self.settle()

    def _io(self, call: Callable[..., Any], *args: Any) -> None:
        try:
            call(*args)
        except OSError as exc:
            raise StateError(f"state journal {path_of(self.inner.path)}: {exc}") from exc

    def commit(self, run_id: str, rows: pa.Table, rejected: pa.Table, *,
               deletes: bool, match_type: str | None = None) -> None:
        with self._lock:
            inner = self.inner
            if self._open is None or rejected.num_rows:
                # Rejections are written at once: their rows update one another.
                self.settle()
                inner.commit(run_id, rows, rejected, deletes=deletes, match_type=match_type)
                return
            if rows.num_rows:
                seq, table, mv_is_key = inner.numbered(rows)
                self._append(Entry({"kind": "commit", "seq": seq, "op": 2 if deletes else 1,
                                    "run_id": run_id, "at": time.time(),
                                    "mv_is_key": mv_is_key, "match_type": match_type}, table))
                inner._track(table, deletes)
            # The counters are diagnostics, written apart at most once a second.
            inner._progress.add(inner._q, run_id, rows.num_rows, 0, deletes=deletes)
            inner._progress.committed()

    def set_source_state(self, run_id: str, value: str) -> None:
        with self._lock:
            if self._open is None:
                self.inner.set_source_state(run_id, value)
            else:
                self._append(Entry({"kind": "source", "run_id": run_id, "value": value,
                                    "at": time.time()}))

    def _settled(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` (a method of the inner storage) under the lock, once the
        journal is folded: what it reads or writes sees every commit."""
        with self._lock:
            self.settle()
            return call(*args)

    def get_source_state(self) -> str | None:
        return self._settled(self.inner.get_source_state)

    def load(self, partitions: frozenset[int] | None) -> tuple[np.ndarray, np.ndarray]:
        return self._settled(self.inner.load, partitions)

    def load_sorted(self, partitions: frozenset[int] | None) -> SortedState | LayeredState:
        return self._settled(self.inner.load_sorted, partitions)

    def lookup(self, kids: np.ndarray, batch_rows: int) -> Iterator[pa.RecordBatch]:
        return self._settled(self.inner.lookup, kids, batch_rows)

    def rejection_kids(self, partitions: frozenset[int] | None) -> np.ndarray:
        return self._settled(self.inner.rejection_kids, partitions)

    def clear_rejections(self, kids: np.ndarray) -> None:
        self._settled(self.inner.clear_rejections, kids)

    def finish(self) -> None:
        with self._lock:
            self.settle()
            self.close()
            self.inner.finish()

    def close(self) -> None:
        """Stop journaling (what it holds is folded first)."""
        with self._lock:
            self.settle()
            if self._open is not None:
                os.close(self._open.fd)
                self._open = None

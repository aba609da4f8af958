"""The embedded default state store: DuckDB files under the project's ``.conn/`` folder.

Layout (``root`` is ``state.url`` if given, else ``<project>/.conn``)::

    root/state/<sync>.duckdb   acknowledged records, change log, rejections, progress,
                               source bookmark, meta (format version, app id, canary)
    root/state/<sync>.duckdb.sorted/
                               cache of the planner's sorted state (see load_sorted),
                               a base plus at most one change layer (cache_layers)
    root/state/runs.duckdb     run history of every sync
    root/locks/<sync>.lock     flock of the running process (pid, host, run id inside)

One file per sync, so syncs run in parallel processes (DuckDB allows one writing process
per file). Each commit is one DuckDB transaction (WAL, fsync on commit) appending to the
``changes`` log (key id, key, hash, match value) and one row to ``commits`` (operation,
run, time), together with rejections and the run's progress counters; at the end of a
run (or at the next open after a crash) the log is folded into ``records``. See
:mod:`conn.state.backends.duckdb.migrations` for the tables.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.errors import StateError
from conn.state import history
from conn.state.backends.duckdb import cache_layers, migrations
from conn.state.contracts import StateStore, Storage, SyncState
from conn.state.locks import SyncFileLock, safe_name
from conn.state.planner import PlanningSyncState, row_hashes
from conn.state.planner.sorted_state import (
    LayeredState,
    SortedState,
    table_layout,
    table_positions,
)
from conn.state.target import OnChange, SyncTarget, decide

log = logging.getLogger(__name__)
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


def _connect(path: Path, *, read_only: bool = False,
             hot: bool = True) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, turning DuckDB's errors into :class:`StateError`; retries for a
    few seconds while another process holds the file. ``hot``: a sync's state file, with
    the write settings above (the run-history file keeps DuckDB's defaults)."""
    # A bounded memory budget: the end-of-run compaction of a first 10M-row run spills to
    # disk instead of growing the process.
    config = {"memory_limit": MEMORY_LIMIT}
    if hot:
        config.update(checkpoint_threshold=CHECKPOINT_THRESHOLD, force_compression=COMPRESSION)
    return _retry_busy(path, lambda: duckdb.connect(str(path), read_only=read_only,
                                                     config=config))


def _attach(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection to the DuckDB file ``path`` attached to the process's shared
    in-memory database (and made its default): ~1 ms instead of ~12 ms for a database of
    its own, for small files that need no settings (the run history). Detach it with
    :func:`_detach`; callers serialise attaching one file (see ``_RUNS_LOCK``)."""
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


def _detach(con: duckdb.DuckDBPyConnection) -> None:
    """Detach what :func:`_attach` attached (DuckDB checkpoints it) and close ``con``."""
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


#: Meta key of the sorted-state cache's generation: a fresh random token written in the
#: transaction of every compaction, so a cache written for other records (a crash
#: before the cache was rewritten, a state file restored from a backup) never matches.
CACHE_GENERATION = "sorted_cache_generation"
#: The cached arrays (see :meth:`SortedState.parts`).
CACHE_PARTS = ("pairs", "table")

#: Rows per step of :meth:`DuckDBStorage.compact` (bounds its memory).
COMPACT_ROWS = 1_000_000
#: Up to this many records, the end-of-run cache is built in memory (pairs and table:
#: 24 bytes per key, 48 MB here) and written in one go, rather than streamed slice by
#: slice (700,000 keys: 0.11 -> 0.06 s); more keys are streamed to bound the run's peak.
CACHE_IN_MEMORY_KEYS = 2_000_000


def _partition_ranges(rows: int) -> list[str]:
    """SQL conditions splitting the partitions into consecutive ranges of about
    :data:`COMPACT_ROWS` of ``rows`` each (key ids are uniform hashes), as key id ranges
    (a partition is the top bits of the key id)."""
    steps = max(1, min(row_hashes.PARTITIONS, -(-rows // COMPACT_ROWS)))
    edges = [round(i * row_hashes.PARTITIONS / steps) for i in range(steps + 1)]
    if steps == 1:
        return ["true"]
    shift = row_hashes.PARTITION_SHIFT
    return [f"kid BETWEEN {lo << shift} AND {(hi << shift) - 1}"
            for lo, hi in itertools.pairwise(edges)]


class DuckDBStorage(Storage):
    """:class:`Storage` in one sync's DuckDB file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path
        # Commit numbers are unique in the file: ``records`` keep theirs.
        self._seq = int(con.execute("SELECT coalesce(max(seq), 0) FROM commits")
                        .fetchall()[0][0])
        # Whether ``rejections`` may hold rows: when it is empty (the usual case) a
        # commit skips clearing earlier rejections of its keys (an IN-subquery join per
        # batch). Only this connection writes the file while the sync is open.
        self._rejections: bool | None = None
        self._cache_job: threading.Thread | None = None
        # The (id, hash) arrays of this run's commits while they are the whole change
        # log over empty records, upserts only (a first sync): the end of the run then
        # neither counts the changes' distinct keys nor reads them back for the cache.
        self._run_pairs: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._run_rows = 0

    def _q(self, sql: str, params: list[Any] | None = None) -> Any:
        try:
            return self.con.execute(sql, params or [])
        except duckdb.Error as exc:
            raise StateError(f"state file {self.path}: {exc}") from exc

    def compact(self, force: bool = False, *, distinct_upserts: bool = False) -> None:
        """Fold the change log into ``records`` and start a new generation of the
        sorted-state cache (one transaction). ``distinct_upserts``: the caller knows
        that every change upserts a different key (the check is skipped).

        The fold goes through the key space in ranges of partitions holding about
        :data:`COMPACT_ROWS` rows each, so DuckDB's window works on one range at a time:
        memory stays bounded however large the state (a single statement over 7M changed
        rows took ~1 GB)."""
        n = self._q("SELECT count(*) FROM changes").fetchall()[0][0]
        if not n and not force:
            return
        self._run_pairs = None  # the change log is folded: no longer this run's alone
        self.con.begin()
        try:
            self._fold(n, distinct_upserts)
            migrations.write_meta(self.con, {CACHE_GENERATION: uuid.uuid4().hex})
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise

    def _fold(self, n: int, distinct_upserts: bool = False) -> None:
        """Fold the ``n`` changes into ``records`` and empty ``changes`` (inside the
        caller's transaction)."""
        ranges = _partition_ranges(n)
        # Per range: does every key change once, as an upsert? Counting distinct ids
        # costs a fraction of the window (a sort of the range) that is otherwise needed
        # to find each key's latest change.
        simple = [True] * len(ranges) if distinct_upserts else [bool(r[0]) for r in (self._q(
            f"SELECT count(DISTINCT kid) = count(*) AND bool_and(c.op = 1) FROM changes "
            f"JOIN commits c USING (seq) WHERE {where}").fetchall()[0] for where in ranges)]
        had_records = bool(self._q("SELECT EXISTS (SELECT 1 FROM records)").fetchall()[0][0])
        if not had_records and all(simple):
            # A first sync: the change log is the new ``records`` (same layout); a
            # rename is a catalog change (no data is copied or recompressed).
            self._q("DROP TABLE records")
            self._q("ALTER TABLE changes RENAME TO records")
            self._q(migrations.CHANGES_TABLE)
            return
        for where, plain in zip(ranges, simple, strict=True):
            if had_records:
                self._q(f"DELETE FROM records WHERE {where} AND kid IN "
                        f"(SELECT kid FROM changes WHERE {where})")
            if plain:
                self._q(f"INSERT INTO records SELECT * FROM changes WHERE {where}")
            else:
                self._q(f"""INSERT INTO records SELECT seq, kid, key, hash, match_value
                    FROM (SELECT ch.*, c.op, row_number() OVER (PARTITION BY kid ORDER BY
                    seq DESC) AS rn FROM changes ch JOIN commits c USING (seq) WHERE {where})
                    WHERE rn = 1 AND op = 1""")
        self._q("DELETE FROM changes")

    def rekey(self) -> None:
        """Recompute key ids and partitions from the stored keys (hash function changed)."""
        self.con.begin()
        self._q("UPDATE records SET kid = hash(key)")
        self._q("UPDATE rejections SET kid = hash(key), "
                "partition = (hash(key) >> 56)::USMALLINT WHERE key IS NOT NULL")
        self.con.commit()
        self.compact(force=True)

    def _sorted_reader(self, partitions: frozenset[int] | None = None
                       ) -> Iterator[pa.RecordBatch]:
        """``(kid, hash)`` of the records in key id order, sorted by DuckDB one range of
        partitions at a time (bounded memory), optionally only some partitions."""
        total = self._q("SELECT count(*) FROM records").fetchall()[0][0]
        only = ""
        if partitions is not None:
            only = (f" AND (kid >> {row_hashes.PARTITION_SHIFT}) IN "
                    f"({', '.join(str(int(p)) for p in sorted(partitions)) or 'NULL'})")
        for where in _partition_ranges(total):
            cur = self.con.cursor()
            try:
                yield from cur.sql(f"SELECT kid, coalesce(hash, 0) AS hash FROM records "
                                   f"WHERE {where}{only} ORDER BY kid").to_arrow_reader(
                                       COMPACT_ROWS)
            finally:
                cur.close()

    def load(self, partitions: frozenset[int] | None) -> tuple[np.ndarray, np.ndarray]:
        self.compact()
        pairs = self._load_pairs(partitions)
        return pairs[0::2], pairs[1::2]

    # --- sorted-state cache -------------------------------------------------------------
    #
    # ``<sync>.duckdb.sorted/<generation>.{pairs,table}.npy``: the planner's
    # SortedState of all records, written at the end of a run (after the compaction)
    # and memory-mapped at the next open instead of sorting the records' key ids and
    # rebuilding the probing table. Each file is written to a temporary name, fsynced
    # and renamed; the generation in the names must equal the one in ``meta``, which every
    # compaction replaces in its own transaction. Anything else (missing, stale, truncated
    # or unreadable files) falls back to reading the records in key id order.

    @property
    def cache_dir(self) -> Path:
        """Folder of the sorted-state cache (next to the state file)."""
        return self.path.with_name(self.path.name + ".sorted")

    def _generation(self) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = ?", [CACHE_GENERATION]).fetchall()
        return rows[0][0] if rows else None

    def _cache_files(self, gen: str) -> dict[str, Path]:
        return {p: self.cache_dir / f"{gen}.{p}.npy" for p in CACHE_PARTS}

    def _read_cache(self) -> SortedState | LayeredState | None:
        gen = self._generation()
        if gen is None:
            return None
        try:
            state = self._cached_state(gen)
        except (OSError, ValueError, EOFError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("%s: ignoring the sorted-state cache (%s)", self.path, exc)
            return None
        n = self._q("SELECT count(*) FROM records").fetchall()[0][0]
        if state is None or state.effective != n:
            log.warning("%s: ignoring the sorted-state cache (does not match the records)",
                        self.path)
            return None
        return state

    def _base_state(self, gen: str) -> SortedState | None:
        parts = {p: _map_npy(f) for p, f in self._cache_files(gen).items()}
        return SortedState.from_parts(parts["pairs"], parts["table"])

    def _cached_state(self, gen: str) -> SortedState | LayeredState | None:
        """The cache of generation ``gen``: its own full files, or a change layer over
        an earlier generation's (see :mod:`conn.state.backends.duckdb.cache_layers`)."""
        layer = cache_layers.read(self.cache_dir, gen)
        if layer is None:
            return self._base_state(gen)
        base_gen, kids, hashes, gone = layer
        base = self._base_state(base_gen)
        return None if base is None else LayeredState(base, SortedState(kids, hashes), gone)

    def _pending_changes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The latest change per key in the change log: ``(kids, hashes, upserted)``;
        ``None`` when there are none, or too many for a cache layer to pay off."""
        n = self._q("SELECT count(*) FROM changes").fetchall()[0][0]
        base = self._q("SELECT count(*) FROM records").fetchall()[0][0]
        if not n or n > cache_layers.MAX_FRACTION * base:
            return None
        t = self.con.sql("""SELECT kid, coalesce(hash, 0) AS hash, op = 1 AS upserted
            FROM (SELECT ch.kid, ch.hash, c.op, row_number() OVER (PARTITION BY ch.kid
            ORDER BY ch.seq DESC) AS rn FROM changes ch JOIN commits c USING (seq))
            WHERE rn = 1""").to_arrow_table()
        return (t.column(0).to_numpy().astype(np.uint64, copy=False),
                t.column(1).to_numpy().astype(np.uint64, copy=False),
                t.column(2).to_numpy(zero_copy_only=False).astype(bool))

    def write_cache(self, previous: str | None = None,
                    changes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, *,
                    background: bool = False,
                    pairs: Callable[[], np.ndarray] | None = None) -> None:
        """Write the sorted-state cache of the current records unless it exists; remove
        other generations. With the generation the records had before this run's fold
        (``previous``) and the run's ``changes``, only a change layer over that
        generation's base is written while it stays small. Best effort: a failure only
        costs the next open time.

        ``background``: a cache built in memory is written to its files on a thread once
        its records are read, so that it overlaps the closing of the DuckDB file (its
        checkpoint); :meth:`wait_cache` waits for it (before the sync's lock goes).
        ``pairs``: gives the records' (id, hash) pairs instead of reading them (called
        on that thread)."""
        try:
            gen = self._generation()
            if gen is None:  # a state file from before the cache
                gen = uuid.uuid4().hex
                migrations.write_meta(self.con, {CACHE_GENERATION: gen})
            keep = self._existing_cache(gen)
            if keep is None and previous not in (None, gen) and changes is not None:
                keep = self._write_layer(previous, gen, changes)
            if keep is None:
                files = self._cache_files(gen)
                self.cache_dir.mkdir(exist_ok=True)
                n = self._q("SELECT count(*) FROM records").fetchall()[0][0]
                if 0 < n <= CACHE_IN_MEMORY_KEYS:
                    if pairs is None:
                        loaded = self._load_pairs(None)
                        pairs = lambda: loaded  # noqa: E731
                    self._write_built_cache(files, pairs, background)
                    return
                written = bool(n) and _replace_files(
                    files, lambda tmp: self._stream_cache(n, tmp), self.cache_dir)
                keep = list(files.values()) if written else []
            self._keep_only(keep)
        except (OSError, ValueError, duckdb.Error, StateError) as exc:
            log.warning("%s: could not write the sorted-state cache (%s)", self.path, exc)

    def wait_cache(self) -> None:
        """Wait for a cache being written in the background (see :meth:`write_cache`)."""
        if self._cache_job is not None:
            self._cache_job.join()
            self._cache_job = None

    def _write_built_cache(self, files: dict[str, Path], pairs: Callable[[], np.ndarray],
                           background: bool) -> None:
        """Build the state of ``pairs()`` (the records' (id, hash) pairs) and write it
        as the cache ``files``; then remove the other generations. ``background``: on a
        thread (see :meth:`write_cache`)."""
        if background:
            self._cache_job = threading.Thread(
                target=self._write_built_cache, args=(files, pairs, False),
                name="conn-state-cache")
            self._cache_job.start()
            return
        try:
            parts = SortedState.from_pairs(pairs()).parts()

            def write(tmp: dict[str, Path]) -> bool:
                for p, path in tmp.items():
                    with open(path, "wb") as f:
                        np.lib.format.write_array(f, parts[p], allow_pickle=False)
                        f.flush()
                        os.fsync(f.fileno())
                return True

            _replace_files(files, write, self.cache_dir)
            self._keep_only(list(files.values()))
        except (OSError, ValueError) as exc:
            log.warning("%s: could not write the sorted-state cache (%s)", self.path, exc)

    def _keep_only(self, keep: list[Path]) -> None:
        """Remove every cache file but ``keep``."""
        if self.cache_dir.exists():
            names = {f.name for f in keep}
            for f in self.cache_dir.iterdir():
                if f.name not in names:
                    f.unlink(missing_ok=True)

    def _existing_cache(self, gen: str) -> list[Path] | None:
        """The files making up ``gen``'s cache if it is already written."""
        full = list(self._cache_files(gen).values())
        if all(f.exists() for f in full):
            return full
        layer = cache_layers.files(self.cache_dir, gen)
        if layer["manifest"].exists():
            base = cache_layers.read(self.cache_dir, gen)
            base_files = list(self._cache_files(base[0]).values()) if base else []
            if base_files and all(f.exists() for f in base_files):
                return list(layer.values()) + base_files
        return None  # (a layer whose base is gone is replaced by a whole cache)

    def _write_layer(self, previous: str, gen: str,
                     changes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[Path] | None:
        """Write ``gen``'s cache as a change layer over ``previous``'s base; the files
        to keep, or ``None`` when ``previous`` has no cache or the layer grew too big."""
        layer = cache_layers.read(self.cache_dir, previous)
        base_gen = previous if layer is None else layer[0]
        base_files = self._cache_files(base_gen)
        if not all(f.exists() for f in base_files.values()):
            return None
        base_kids = _map_npy(base_files["pairs"])[0::2]
        empty = np.empty(0, np.uint64)
        _, kids, hashes, gone = layer if layer is not None else (None, empty, empty, empty)
        kids, hashes, gone = cache_layers.merge(base_kids, kids, hashes, gone, *changes)
        if cache_layers.too_big(len(base_kids), kids, gone):
            return None
        cache_layers.write(self.cache_dir, gen, base_gen, kids, hashes, gone)
        _fsync_dir(self.cache_dir)
        return list(cache_layers.files(self.cache_dir, gen).values()) + list(
            base_files.values())

    def _stream_cache(self, n: int, tmp: dict[str, Path]) -> bool:
        """Write the cache of the ``n`` records to the ``tmp`` files from the records
        in key id order, in slices of :data:`COMPACT_ROWS` (this runs after the
        compaction, next to DuckDB's buffers: building the whole SortedState here took
        the run's peak past 1 GB at 10M keys). The probing table is the one
        :class:`SortedState` builds, computed slice by slice. False if the records do
        not come in key id order."""
        layout = table_layout(n)
        u64 = np.dtype(np.uint64)
        with open(tmp["pairs"], "wb") as fp:
            _npy_header(fp, u64, 2 * n)
            last = None
            for b in self._sorted_reader():
                kids = b.column(0).to_numpy().astype(np.uint64, copy=False)
                if len(kids) and ((last is not None and kids[0] < last)
                                  or bool((kids[1:] < kids[:-1]).any())):
                    return False
                if len(kids):
                    last = kids[-1]
                pairs = np.empty(2 * len(kids), dtype=np.uint64)
                pairs[0::2] = kids
                pairs[1::2] = b.column(1).to_numpy().astype(np.uint64, copy=False)
                fp.write(memoryview(pairs).cast("B"))
            fp.flush()
            os.fsync(fp.fileno())
        # Two passes over the written ids: the table's size (past the last position)
        # goes into its header, then the entries, in increasing position order.
        last_pos = -1
        for _, pos in _positions(tmp["pairs"], n, layout.shift):
            last_pos = int(pos[-1])
        size = layout.size(last_pos)
        item = layout.dtype.itemsize
        with open(tmp["table"], "wb") as ft:
            start = _npy_header(ft, layout.dtype, size)
            for i, pos in _positions(tmp["pairs"], n, layout.shift):
                seg = np.zeros(int(pos[-1] - pos[0]) + 1, dtype=layout.dtype)
                seg[pos - pos[0]] = i + 1  # entries hold position + 1
                ft.seek(start + int(pos[0]) * item)
                ft.write(memoryview(seg).cast("B"))
            ft.truncate(start + size * item)
            ft.flush()
            os.fsync(ft.fileno())
        return True

    def load_sorted(self, partitions: frozenset[int] | None) -> SortedState | LayeredState:
        self.compact()
        if partitions is None:
            state = self._read_cache()
            if state is not None:
                return state
        return SortedState.from_pairs(self._load_pairs(partitions))

    def _load_pairs(self, partitions: frozenset[int] | None) -> np.ndarray:
        """The records' (id, hash) pairs in key id order, filled batch by batch: the
        state is held once (10M keys without a cache: peak 894 -> 809 MB)."""
        total = self._q("SELECT count(*) FROM records").fetchall()[0][0]
        pairs = np.empty(2 * total, dtype=np.uint64)  # pages of unopened partitions stay untouched
        at = 0
        for b in self._sorted_reader(partitions):
            end = at + 2 * b.num_rows
            pairs[at:end:2] = b.column(0).to_numpy()
            pairs[at + 1:end:2] = b.column(1).to_numpy()
            at = end
        return pairs[:at]

    def has_state(self) -> bool:
        """Whether the file holds anything a target acknowledged or a bookmark."""
        return bool(self._q(
            "SELECT EXISTS (SELECT 1 FROM records) OR EXISTS (SELECT 1 FROM changes) OR "
            "EXISTS (SELECT 1 FROM rejections) OR EXISTS (SELECT 1 FROM source_state)"
        ).fetchall()[0][0])

    def begin_run(self, run_id: str) -> None:
        self._q("INSERT INTO progress (run_id, started_at, updated_at) VALUES (?, now(), "
                "now()) ON CONFLICT DO NOTHING", [run_id])
        empty = self._q("SELECT NOT EXISTS (SELECT 1 FROM records) AND NOT EXISTS "
                        "(SELECT 1 FROM changes)").fetchall()[0][0]
        self._run_pairs, self._run_rows = ([] if empty else None), 0

    def _track(self, rows: pa.Table, deletes: bool) -> None:
        """Keep the (id, hash) pairs of a committed batch while the change log holds
        only this run's upserts (see ``_run_pairs``), up to :data:`CACHE_IN_MEMORY_KEYS`."""
        if self._run_pairs is None:
            return
        self._run_rows += rows.num_rows
        if deletes or self._run_rows > CACHE_IN_MEMORY_KEYS:
            self._run_pairs = None
            return
        kids = rows.column("kid").to_numpy().astype(np.uint64)
        hashes = rows.column("hash").fill_null(0).to_numpy().astype(np.uint64)
        self._run_pairs.append((kids, hashes))

    def _may_have_rejections(self) -> bool:
        if self._rejections is None:
            self._rejections = bool(self._q(
                "SELECT EXISTS (SELECT 1 FROM rejections)").fetchall()[0][0])
        return self._rejections

    def commit(self, run_id: str, rows: pa.Table, rejected: pa.Table, *,
               deletes: bool, match_type: str | None = None) -> None:
        self._seq += 1
        con = self.con
        clear = self._may_have_rejections()
        # A commit whose match values are its keys (matching on the primary key, the
        # usual case) stores them once: half the strings written to the WAL.
        mv, key = rows.column("match_value"), rows.column("key")
        mv_is_key = bool(rows.num_rows) and not mv.null_count and bool(
            pc.all(pc.equal(mv, key.cast(mv.type))).as_py())
        rows = pa.table({"seq": pa.nulls(rows.num_rows, pa.int64()).fill_null(self._seq),
                         "kid": rows.column("kid"), "key": key, "hash": rows.column("hash"),
                         "match_value": pa.nulls(rows.num_rows, pa.string()) if mv_is_key
                         else mv.cast(pa.string())})
        con.register("_rows", rows)
        if rejected.num_rows:
            con.register("_rej", rejected)
            self._rejections = True  # conservative: set before the transaction
        con.begin()
        try:
            if rows.num_rows:
                self._q("INSERT INTO commits VALUES (?, ?, ?, now(), ?, ?)",
                        [self._seq, 2 if deletes else 1, run_id, mv_is_key, match_type])
                self._q("INSERT INTO changes SELECT * FROM _rows")
            if rejected.num_rows:
                # A key rejected again keeps the time of its first rejection.
                self._q("""INSERT INTO rejections SELECT r.kid, r.key, r.partition, r.reason,
                    ?, ?, now(), coalesce(e.since, now()), coalesce(e.attempts, 0) + 1
                    FROM _rej r LEFT JOIN (SELECT kid, min(since) AS since,
                    max(attempts) AS attempts FROM rejections WHERE run_id <> ?
                    GROUP BY kid) e USING (kid)""",
                        ["delete" if deletes else "write", run_id, run_id])
            if clear:
                self._q("DELETE FROM rejections WHERE run_id <> ? AND kid IN (SELECT kid "
                        "FROM _rows" + (" UNION ALL SELECT kid FROM _rej)"
                                        if rejected.num_rows else ")"), [run_id])
            col = "deleted" if deletes else "acknowledged"
            self._q(f"""UPDATE progress SET batches = batches + 1, {col} = {col} + ?,
                rejected = rejected + ?, updated_at = now() WHERE run_id = ?""",
                    [rows.num_rows, rejected.num_rows, run_id])
            con.commit()
        except BaseException:
            self._run_pairs = None
            con.rollback()
            raise
        finally:
            con.unregister("_rows")
            if rejected.num_rows:
                con.unregister("_rej")
        self._track(rows, deletes)

    def lookup(self, kids: np.ndarray, batch_rows: int) -> Iterator[pa.RecordBatch]:
        cur = self.con.cursor()
        try:
            cur.register("_want", pa.table({"kid": pa.array(kids, pa.uint64())}))
            reader = cur.sql("SELECT key, match_value, match_type, hash FROM acknowledged "
                             "WHERE kid IN (SELECT kid FROM _want)").to_arrow_reader(batch_rows)
            for b in reader:
                if b.num_rows:
                    yield b
        finally:
            cur.close()

    def rejection_kids(self, partitions: frozenset[int] | None) -> np.ndarray:
        where = ""
        if partitions is not None:
            where = f"WHERE partition IN ({', '.join(str(int(p)) for p in partitions)})"
        t = self.con.sql(f"SELECT kid FROM rejections {where}").to_arrow_table()
        return t.column(0).to_numpy().astype(np.uint64, copy=False)

    def clear_rejections(self, kids: np.ndarray) -> None:
        self.con.register("_gone", pa.table({"kid": pa.array(kids, pa.uint64())}))
        try:
            self._q("DELETE FROM rejections WHERE kid IN (SELECT kid FROM _gone)")
        finally:
            self.con.unregister("_gone")

    def get_source_state(self) -> str | None:
        rows = self._q("SELECT value FROM source_state WHERE id = 1").fetchall()
        return rows[0][0] if rows else None

    def set_source_state(self, run_id: str, value: str) -> None:
        self._q("INSERT OR REPLACE INTO source_state VALUES (1, ?, ?, now())", [value, run_id])

    def finish(self) -> None:
        run = self._run_pairs
        if run is not None and self._run_rows:
            kids = np.concatenate([k for k, _ in run])
            if bool((np.diff(np.sort(kids)) != 0).all()):  # (a key twice: the full fold)
                hashes = np.concatenate([h for _, h in run])
                self.compact(distinct_upserts=True)
                self.write_cache(background=True, pairs=partial(_sorted_pairs, kids, hashes))
                return
        previous = self._generation()
        changes = self._pending_changes()
        self.compact()
        self.write_cache(previous, changes, background=True)


def _npy_header(f: Any, dtype: np.dtype, n: int) -> int:
    """Write the ``.npy`` header of a one-dimensional array; return the data offset."""
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                             "fortran_order": False, "shape": (n,)})
    return f.tell()


def _positions(pairs_file: Path, n: int, shift: np.uint64
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(indices, table positions)`` of the sorted ids in ``pairs_file`` (id, hash,
    ...), in slices (:func:`~conn.state.planner.sorted_state.table_positions`)."""
    after = None
    with open(pairs_file, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        for lo in range(0, n, COMPACT_ROWS):
            kids = np.fromfile(f, dtype=np.uint64, count=2 * min(COMPACT_ROWS, n - lo))[0::2]
            i, pos = table_positions(kids, shift, start=lo, after=after)
            after = int(pos[-1])
            yield i, pos


def _map_npy(path: Path) -> np.ndarray:
    """A read-only, memory-mapped view of a one-dimensional ``.npy`` file. The pages are
    mapped up front (``MAP_POPULATE``): one call instead of a page fault per 4 kB page
    during the random lookups (0.7 s at 10M keys)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
        if len(shape) != 1 or fortran or dtype.hasobject or not shape[0]:
            raise ValueError(f"{path.name}: not a non-empty one-dimensional array")
        size = os.fstat(f.fileno()).st_size
        if size != offset + shape[0] * dtype.itemsize:
            raise ValueError(f"{path.name}: {size} bytes, expected "
                             f"{offset + shape[0] * dtype.itemsize}")
        if hasattr(mmap, "MAP_POPULATE"):
            mm = mmap.mmap(f.fileno(), size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                           prot=mmap.PROT_READ)
        else:
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, dtype=dtype, count=shape[0], offset=offset)


def _sorted_pairs(kids: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """(id, hash, id, hash, ...) in id order."""
    order = np.argsort(kids)
    pairs = np.empty(2 * len(kids), dtype=np.uint64)
    pairs[0::2] = kids[order]
    pairs[1::2] = hashes[order]
    return pairs


def _replace_files(files: dict[str, Path], write: Callable[[dict[str, Path]], bool],
                   folder: Path) -> bool:
    """Write ``files`` through temporary names (``write`` fills them and fsyncs; False
    gives up), then rename them into place and fsync ``folder``."""
    tmp = {p: f.with_name(f".{f.name}.{os.getpid()}.tmp") for p, f in files.items()}
    try:
        if not write(tmp):
            return False
        for p, f in files.items():
            os.replace(tmp[p], f)
        _fsync_dir(folder)
        return True
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DuckDBStateStore(StateStore):
    """Local, file-based state (the default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._open: dict[str, DuckDBStorage] = {}

    @classmethod
    def open(cls, url: str | None, project_dir: Any) -> DuckDBStateStore:
        """``url``: a directory (``duckdb:///abs/dir`` or a plain path, relative to the
        project); default ``<project>/.conn``."""
        base = Path(project_dir or ".")
        if not url:
            return cls(base / ".conn")
        path = url.removeprefix("duckdb://") if url.startswith("duckdb://") else url
        p = Path(path)
        return cls(p if p.is_absolute() else base / p)

    def sync_path(self, sync: str) -> Path:
        """The state file of a sync."""
        return self.root / "state" / f"{safe_name(sync)}.duckdb"

    def _open_sync_file(self, sync: str, *, read_only: bool = False,
                        readable_from: int = migrations.FORMAT_VERSION
                        ) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
        path = self.sync_path(sync)
        con = _connect(path, read_only=read_only)
        try:
            meta = migrations.prepare(con, str(path), kind="sync", identity={"sync": sync},
                                      read_only=read_only, readable_from=readable_from)
        except BaseException:
            con.close()
            raise
        return con, meta

    @contextmanager
    def open_sync(self, sync: str, run_id: str, *, full_resync: bool = False,
                  partitions: frozenset[int] | None = None,
                  target: SyncTarget | None = None,
                  on_target_change: OnChange = None) -> Iterator[SyncState]:
        """See :meth:`StateStore.open_sync`. ``partitions`` (extension) opens only those
        partitions (``conn.state.PARTITIONS`` in all); deletions then cover only
        them."""
        lock = SyncFileLock(self.root / "locks", sync, run_id, partitions).acquire()
        con = storage = None
        try:
            self.sync_path(sync).parent.mkdir(parents=True, exist_ok=True)
            con, meta = self._open_sync_file(sync)
            storage = DuckDBStorage(con, self.sync_path(sync))
            if target is not None:
                decision = decide(sync, meta.get("target"), target, on_target_change,
                                  has_state=storage.has_state())
                if decision == "reset":
                    con.close()
                    con = None
                    self._retire(sync)
                    con, meta = self._open_sync_file(sync)
                    storage = DuckDBStorage(con, self.sync_path(sync))
                if decision != "keep":
                    migrations.write_meta(con, {"target": target.to_json()})
            self._check_canary(storage, meta, full_resync)
            storage.begin_run(run_id)
            self._open[sync] = storage
            with PlanningSyncState(storage, run_id, full_resync=full_resync,
                                   partitions=partitions) as st:
                yield st
        finally:
            self._open.pop(sync, None)
            try:
                if con is not None:
                    with contextlib.suppress(duckdb.Error):
                        con.close()  # DuckDB's checkpoint, while the cache is written
            finally:
                if storage is not None:
                    storage.wait_cache()
                lock.release()

    def _retire(self, sync: str) -> None:
        """Move a sync's state file (and its cache) aside, under ``state/retired/``: the
        sync starts from scratch for a new target (``--new-target``); the old file stays
        readable for people who want to know what the old target was sent."""
        path = self.sync_path(sync)
        folder = path.parent / "retired"
        folder.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        os.replace(path, folder / f"{path.stem}.{stamp}.duckdb")
        wal = path.with_name(path.name + ".wal")
        if wal.exists():
            os.replace(wal, folder / f"{path.stem}.{stamp}.duckdb.wal")
        cache = path.with_name(path.name + ".sorted")
        if cache.exists():
            import shutil

            shutil.rmtree(cache)
        _fsync_dir(path.parent)

    def _check_canary(self, storage: DuckDBStorage, meta: dict[str, str],
                      full_resync: bool) -> None:
        current = row_hashes.canary(storage.con)
        action = row_hashes.check_canary(meta.get("hash_canary"), current, full_resync)
        if action == "refuse":
            raise row_hashes.hash_changed(str(storage.path), meta.get("hash_engine"))
        if action == "rekey":
            storage.rekey()
        if action != "ok":
            migrations.write_meta(storage.con, {"hash_canary": current,
                                                "hash_algorithm": row_hashes.HASH_ALGORITHM,
                                                "hash_engine": row_hashes.hash_engine()})

    # --- history and reports ------------------------------------------------------------

    @contextmanager
    def _runs_db(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection | None]:
        path = self.root / "state" / "runs.duckdb"
        if read_only and not path.exists():
            yield None
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with _RUNS_LOCK:
            con = _attach(path)  # one small row per run: no database of its own
            try:
                migrations.prepare(con, str(path), kind="runs", identity={})
                yield con
            finally:
                _detach(con)

    def record_run(self, sync: str, run_id: str, report: dict[str, Any]) -> None:
        values = history.sql_values(history.history_row(sync, run_id, report))
        with self._runs_db() as con:
            assert con is not None
            con.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(values))})", values)

    def runs(self, sync: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        import json

        with self._runs_db(read_only=True) as con:
            if con is None:
                return []
            where, params = ("WHERE sync = ?", [sync]) if sync is not None else ("", [])
            cur = con.execute(f"SELECT * FROM runs {where} ORDER BY recorded_at DESC "
                              f"LIMIT {int(limit)}", params)
            cols = [d[0] for d in cur.description]
            out = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        for r in out:
            r["report"] = json.loads(r["report"]) if r["report"] else {}
        return out

    def rejections(self, sync: str, limit: int | None = None) -> list[dict[str, Any]]:
        def sql(version: int) -> str:
            since = ("strftime(since, '%Y-%m-%dT%H:%M:%SZ') AS since, attempts"
                     if version >= 4 else "NULL AS since, NULL AS attempts")
            return ("SELECT key, reason, op, run_id, strftime(rejected_at, "
                    f"'%Y-%m-%dT%H:%M:%SZ') AS \"at\", {since} FROM rejections "
                    "ORDER BY rejected_at DESC, key"
                    + (f" LIMIT {int(limit)}" if limit is not None else ""))

        storage = self._open.get(sync)
        if storage is not None:
            cur = storage.con.cursor()
            try:
                return _dicts(cur.execute(sql(migrations.FORMAT_VERSION)))
            finally:
                cur.close()
        if not self.sync_path(sync).exists():
            return []
        # The rejections table has the columns read here in every format.
        con, meta = self._open_sync_file(sync, read_only=True, readable_from=1)
        try:
            return _dicts(con.execute(sql(int(meta["format_version"])))) if meta else []
        finally:
            con.close()

    def stored_target(self, sync: str) -> str | None:
        """The target identity stored with a sync's state (see :mod:`conn.state.target`)."""
        storage = self._open.get(sync)
        if storage is not None:
            cur = storage.con.cursor()
            try:
                rows = cur.execute("SELECT value FROM meta WHERE key = 'target'").fetchall()
            finally:
                cur.close()
            return rows[0][0] if rows else None
        if not self.sync_path(sync).exists():
            return None
        con, meta = self._open_sync_file(sync, read_only=True, readable_from=1)
        try:
            return meta.get("target")
        finally:
            con.close()


def _dicts(cur: Any) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

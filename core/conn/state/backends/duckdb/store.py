"""The embedded default state store: DuckDB files under the project's ``.conn/`` folder.

Layout (``root`` is ``state.url`` if given, else ``<project>/.conn``)::

    root/state/<sync>.duckdb   acknowledged records, change log, rejections, progress,
                               source bookmark, meta (format version, app id, canary)
    root/state/<sync>.duckdb.sorted/
                               cache of the planner's sorted state, a base plus at
                               most one change layer (see :mod:`.sorted_cache`)
    root/state/<sync>.duckdb.journal
                               a followed sync's commits not yet in the file (:mod:`.journal`)
    root/state/runs.duckdb     run history of every sync
    root/locks/<sync>.lock     flock of the running process (pid, host, run id inside)

One file per sync, so syncs run in parallel processes (DuckDB allows one writing process
per file). Each commit is one DuckDB transaction (WAL, fsync on commit) appending to the
``changes`` log (key id, key, hash, match value) and a row to ``commits`` (operation, run,
time), with rejections and the run's progress counters (at most once a second:
:mod:`.progress`); at the end of a run (or at the next open after a crash) the log is
folded into ``records``. :mod:`conn.state.backends.duckdb.migrations` has the tables."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.errors import StateError
from conn.state import contracts, history, triggers
from conn.state.backends.duckdb import journal, migrations, shared, sorted_cache
from conn.state.backends.duckdb.connection import attach, connect, detach, query, runs_lock
from conn.state.backends.duckdb.delivered import delivered_rows
from conn.state.backends.duckdb.experiments import KeepsExperiments
from conn.state.backends.duckdb.progress import DeferredProgress
from conn.state.backends.duckdb.sorted_cache import Changes, SortedCache
from conn.state.contracts import NULL_KEY_ID, PrivacyStore, StateStore, Storage, SyncState
from conn.state.locks import SyncFileLock, safe_name
from conn.state.planner import PlanningSyncState, row_hashes
from conn.state.planner.sorted_state import LayeredState, SortedState
from conn.state.target import OnChange, SyncTarget, decide

log = logging.getLogger(__name__)

#: Meta key of the sorted-state cache's generation (see :mod:`.sorted_cache`): a fresh
#: random token written in the transaction of every compaction.
CACHE_GENERATION = "sorted_cache_generation"

#: Rows per step of :meth:`DuckDBStorage.compact` (bounds its memory).
COMPACT_ROWS = 1_000_000


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
        #: The planner's sorted state of the records, cached next to the file.
        self.cache = SortedCache(path)
        # The (id, hash) arrays of this run's commits while they are the whole change
        # log over empty records, upserts only (a first sync): the end of the run then
        # neither counts the changes' distinct keys nor reads them back for the cache.
        self._run_pairs: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._run_rows, self._progress = 0, DeferredProgress()

    def _q(self, sql: str, params: list[Any] | None = None) -> Any:
        return query(self.con, self.path, sql, params)

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
                # A record about to be replaced: its commit is the key's first delivery,
                # unless an earlier one is known.
                self._q(f"""INSERT INTO first_acked SELECT kid, seq FROM records r WHERE
                    {where} AND kid IN (SELECT kid FROM changes WHERE {where}) AND NOT
                    EXISTS (SELECT 1 FROM first_acked f WHERE f.kid = r.kid)""")
                self._q(f"DELETE FROM records WHERE {where} AND kid IN "
                        f"(SELECT kid FROM changes WHERE {where})")
            if plain:
                self._q(f"INSERT INTO records SELECT * FROM changes WHERE {where}")
            else:
                self._q(f"""INSERT INTO records SELECT seq, kid, key, hash, match_value
                    FROM (SELECT ch.*, c.op, row_number() OVER (PARTITION BY kid ORDER BY
                    seq DESC) AS rn FROM changes ch JOIN commits c USING (seq) WHERE {where})
                    WHERE rn = 1 AND op = 1""")
        if had_records and not all(simple):
            # Deleted keys (latest change a delete) start again if delivered anew.
            self._q("DELETE FROM first_acked WHERE kid NOT IN (SELECT kid FROM records)")
        self._q("DELETE FROM changes")

    def rekey(self) -> None:
        """Recompute key ids and partitions from the stored keys (hash function changed)."""
        self.con.begin()
        self._q("UPDATE first_acked SET kid = r.kid2 FROM (SELECT kid, hash(key) AS kid2 "
                "FROM records) r WHERE first_acked.kid = r.kid")
        self._q("UPDATE records SET kid = hash(key)")
        self._q("UPDATE rejections SET kid = hash(key), "
                "partition = (hash(key) >> 56)::USMALLINT WHERE key IS NOT NULL")
        self.con.commit()
        self.compact(force=True)

    def record_count(self) -> int:
        """How many records there are (the change log folded or not)."""
        return int(self._q("SELECT count(*) FROM records").fetchall()[0][0])

    def generation(self) -> str | None:
        """The records' generation (see :data:`CACHE_GENERATION`), if any."""
        rows = self._q("SELECT value FROM meta WHERE key = ?", [CACHE_GENERATION]).fetchall()
        return rows[0][0] if rows else None

    def sorted_batches(self, partitions: frozenset[int] | None = None
                       ) -> Iterator[pa.RecordBatch]:
        """``(kid, hash)`` of the records in key id order, sorted by DuckDB one range of
        partitions at a time (bounded memory), optionally only some partitions."""
        total = self.record_count()
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
        pairs = self.sorted_pairs(partitions)
        return pairs[0::2], pairs[1::2]

    def load_sorted(self, partitions: frozenset[int] | None) -> SortedState | LayeredState:
        """The cached state when the whole sync is opened and the cache fits the
        records, else the records' (:mod:`.sorted_cache`)."""
        self.compact()
        if partitions is None:
            state = self.cache.read(self.generation(), self.record_count())
            if state is not None:
                return state
        return SortedState.from_pairs(self.sorted_pairs(partitions))

    def sorted_pairs(self, partitions: frozenset[int] | None = None) -> np.ndarray:
        """The records' (id, hash) pairs in key id order, filled batch by batch: the
        state is held once (10M keys without a cache: peak 894 -> 809 MB)."""
        total = self.record_count()
        pairs = np.empty(2 * total, dtype=np.uint64)  # pages of unopened partitions stay untouched
        at = 0
        for b in self.sorted_batches(partitions):
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
        only this run's upserts (see ``_run_pairs``), while the cache would be built in
        memory from them (:data:`.sorted_cache.IN_MEMORY_KEYS`)."""
        if self._run_pairs is None:
            return
        self._run_rows += rows.num_rows
        if deletes or self._run_rows > sorted_cache.IN_MEMORY_KEYS:
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
        _, rows, mv_is_key = self.numbered(rows)
        con = self.con
        clear = self._may_have_rejections()
        if clear:
            con.register("_rows", rows)
        if rejected.num_rows:
            con.register("_rej", rejected)
            self._rejections = True  # conservative: set before the transaction
        con.begin()
        try:
            if rows.num_rows:
                self._q("INSERT INTO commits VALUES (?, ?, ?, now(), ?, ?)",
                        [self._seq, 2 if deletes else 1, run_id, mv_is_key, match_type])
                try:  # no view registered and dropped: most of a small commit's cost
                    con.from_arrow(rows).insert_into("changes")
                except duckdb.Error as exc:
                    raise StateError(f"state file {self.path}: {exc}") from exc
            if rejected.num_rows:
                # A key rejected again in this run (the mapper, then the planner; a write,
                # then a delete) keeps one entry with both reasons; a key rejected again
                # after earlier runs keeps the time of its first rejection.
                self._q(f"""UPDATE rejections SET reason = rejections.reason || '; ' ||
                    r.reason, excerpt = coalesce(rejections.excerpt, r.excerpt) FROM _rej r
                    WHERE rejections.run_id = ? AND rejections.kid = r.kid AND r.kid <>
                    {NULL_KEY_ID} AND position(r.reason IN rejections.reason) = 0""", [run_id])
                self._q(f"""INSERT INTO rejections SELECT r.kid, r.key, r.partition, r.reason,
                    ?, ?, now(), coalesce(e.since, now()), coalesce(e.attempts, 0) + 1,
                    r.excerpt FROM _rej r LEFT JOIN (SELECT kid, min(since) AS since,
                    max(attempts) AS attempts FROM rejections WHERE run_id <> ?
                    GROUP BY kid) e USING (kid) WHERE r.kid = {NULL_KEY_ID} OR r.kid NOT IN
                    (SELECT kid FROM rejections WHERE run_id = ?)""",
                        ["delete" if deletes else "write", run_id, run_id, run_id])
            if clear:
                self._q("DELETE FROM rejections WHERE run_id <> ? AND kid IN (SELECT kid "
                        "FROM _rows" + (" UNION ALL SELECT kid FROM _rej)"
                                        if rejected.num_rows else ")"), [run_id])
            self._progress.add(self._q, run_id, rows.num_rows, rejected.num_rows,
                               deletes=deletes)  # the counters at most once a second
            con.commit()
            self._progress.committed()
        except BaseException:
            self._run_pairs = None
            con.rollback()
            raise
        finally:
            if clear:
                con.unregister("_rows")
            if rejected.num_rows:
                con.unregister("_rej")
        self._track(rows, deletes)

    def numbered(self, rows: pa.Table) -> tuple[int, pa.Table, bool]:
        """A commit's next sequence number, its rows as ``changes`` stores them, and
        whether their match values are their keys (then stored once: half the strings
        written to the WAL; matching on the primary key is the usual case)."""
        self._seq += 1
        mv, key = rows.column("match_value"), rows.column("key")
        mv_is_key = bool(rows.num_rows) and not mv.null_count and bool(
            pc.all(pc.equal(mv, key.cast(mv.type))).as_py())
        return self._seq, pa.table({
            "seq": pa.nulls(rows.num_rows, pa.int64()).fill_null(self._seq),
            "kid": rows.column("kid"), "key": key, "hash": rows.column("hash"),
            "match_value": pa.nulls(rows.num_rows, pa.string()) if mv_is_key
            else mv.cast(pa.string())}), mv_is_key

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
        """Fold the run's changes into ``records`` and write the sorted-state cache of
        the result (see :meth:`write_cache`)."""
        self._progress.flush(self._q)
        run = self._run_pairs
        if run is not None and self._run_rows:
            kids = np.concatenate([k for k, _ in run])
            if bool((np.diff(np.sort(kids)) != 0).all()):  # (a key twice: the full fold)
                hashes = np.concatenate([h for _, h in run])
                self.compact(distinct_upserts=True)
                self.write_cache(pairs=partial(sorted_cache.pairs_in_order, kids, hashes))
                return
        previous = self.generation()
        changes = self._changes_since(previous) if previous is not None else None
        self.compact()
        self.write_cache(changes)

    def _changes_since(self, generation: str) -> Changes | None:
        """The latest change per key in the change log (made since ``generation``);
        ``None`` when there are none, or too many for a cache layer to pay off."""
        n = self._q("SELECT count(*) FROM changes").fetchall()[0][0]
        if not n or not sorted_cache.fits_a_layer(n, self.record_count()):
            return None
        t = self.con.sql("""SELECT kid, coalesce(hash, 0) AS hash, op = 1 AS upserted
            FROM (SELECT ch.kid, ch.hash, c.op, row_number() OVER (PARTITION BY ch.kid
            ORDER BY ch.seq DESC) AS rn FROM changes ch JOIN commits c USING (seq))
            WHERE rn = 1""").to_arrow_table()
        return Changes(generation, t.column(0).to_numpy().astype(np.uint64, copy=False),
                       t.column(1).to_numpy().astype(np.uint64, copy=False),
                       t.column(2).to_numpy(zero_copy_only=False).astype(bool))

    def write_cache(self, changes: Changes | None = None, *,
                    pairs: Callable[[], np.ndarray] | None = None) -> None:
        """Write the sorted-state cache of the current records (:meth:`SortedCache.write`:
        a change layer when ``changes`` since the previous generation allow; ``pairs``
        gives the records' pairs without reading them). Best effort: a failure only costs
        the next open time. :meth:`SortedCache.wait` waits for it."""
        try:
            gen = self.generation()
            if gen is None:  # a state file from before the cache
                gen = uuid.uuid4().hex
                migrations.write_meta(self.con, {CACHE_GENERATION: gen})
            self.cache.write(gen, self, changes=changes, pairs=pairs)
        except (OSError, ValueError, duckdb.Error, StateError) as exc:
            log.warning("%s: could not write the sorted-state cache (%s)", self.path, exc)


class DuckDBStateStore(KeepsExperiments, triggers.TriggerFiles, StateStore):
    """Local, file-based state (the default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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
        if read_only and journal.pending(path):  # what a crashed run left, folded first
            self._open_sync_file(sync)[0].close()
        con = connect(path, read_only=read_only)
        try:
            meta = migrations.prepare(con, str(path), kind="sync", identity={"sync": sync},
                                      read_only=read_only, readable_from=readable_from)
            if not read_only:
                journal.replay(con, partial(query, con, path), path)
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
        path = self.sync_path(sync)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with shared.file_lock(path):  # no reader of this process has it open now
                con, meta = self._open_sync_file(sync)
                storage = DuckDBStorage(con, path)
                if target is not None:
                    decision = decide(sync, meta.get("target"), target, on_target_change,
                                      has_state=storage.has_state())
                    if decision == "reset":
                        con.close()
                        con = None
                        self._retire(sync)
                        con, meta = self._open_sync_file(sync)
                        storage = DuckDBStorage(con, path)
                    if decision != "keep":
                        migrations.write_meta(con, {"target": target.to_json()})
                self._check_canary(storage, meta, full_resync)
                storage.begin_run(run_id)
                grouped = journal.JournaledStorage(storage)
                shared.register(path, grouped)
            try:
                with PlanningSyncState(grouped, run_id, full_resync=full_resync,
                                       partitions=partitions) as st:
                    yield st
            finally:
                grouped.close()
        finally:
            try:
                with shared.file_lock(path):  # readers wait for the close (a checkpoint)
                    shared.unregister(path)
                    if con is not None:
                        with contextlib.suppress(duckdb.Error):
                            con.close()  # DuckDB's checkpoint, while the cache is written
            finally:
                if storage is not None:
                    storage.cache.wait()
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
        SortedCache(path).discard()
        sorted_cache.fsync_dir(path.parent)

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

    def notes(self) -> contracts.Notes:
        """See :class:`~conn.state.contracts.Notes` (in ``state/runs.duckdb``)."""
        from conn.state.backends.notes import DuckDBNotes

        return DuckDBNotes(self)

    def privacy(self) -> PrivacyStore:
        """See :class:`~conn.state.contracts.PrivacyStore` (in ``state/runs.duckdb``)."""
        from conn.state.backends.duckdb.privacy import DuckDBPrivacy

        return DuckDBPrivacy(self)

    @contextmanager
    def _runs_db(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection | None]:
        path = self.root / "state" / "runs.duckdb"
        if read_only and not path.exists():
            yield None
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with runs_lock(self.root):
            con = attach(path)  # one small row per run: no database of its own
            try:
                migrations.prepare(con, str(path), kind="runs", identity={})
                yield con
            finally:
                detach(con)

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
                     if version >= 4 else "NULL AS since, NULL AS attempts") + (
                ", excerpt" if version >= 6 else ", NULL AS excerpt")
            return ("SELECT key, reason, op, run_id, strftime(rejected_at, "
                    f"'%Y-%m-%dT%H:%M:%SZ') AS \"at\", {since} FROM rejections "
                    "ORDER BY rejected_at DESC, key"
                    + (f" LIMIT {int(limit)}" if limit is not None else ""))

        with shared.reading(self.sync_path(sync)) as storage:
            if storage is not None:
                with shared.cursor(storage) as cur:
                    return shared.dicts(cur.execute(sql(migrations.FORMAT_VERSION)))
            if not self.sync_path(sync).exists():
                return []
            # The rejections table has the columns read here in every format.
            con, meta = self._open_sync_file(sync, read_only=True, readable_from=1)
            try:
                return shared.dicts(con.execute(sql(int(meta["format_version"])))) if meta else []
            finally:
                con.close()

    def delivered(self, sync: str, keys: list[str]) -> list[dict[str, Any]]:
        if not keys:
            return []
        want = pa.table({"key": pa.array(keys, pa.string())})
        with shared.reading(self.sync_path(sync)) as storage:
            if storage is not None:
                with shared.cursor(storage) as cur:
                    cur.register("_want", want)
                    return delivered_rows(cur, migrations.FORMAT_VERSION, first_acked=True)
            if not self.sync_path(sync).exists():
                return []
            con, meta = self._open_sync_file(sync, read_only=True, readable_from=3)
            try:
                if not meta:
                    return []
                con.register("_want", want)
                return delivered_rows(con, int(meta["format_version"]),
                                      first_acked="first_acked" in migrations.table_names(con))
            finally:
                con.close()

    def bound_target(self, sync: str) -> str | None:
        with shared.reading(self.sync_path(sync)) as storage:
            if storage is not None or not self.sync_path(sync).exists():
                return None  # being run by this process (it checked it), or nothing yet
            con, meta = self._open_sync_file(sync, read_only=True, readable_from=1)
            try:
                if not meta.get("target"):
                    return None
                has_state = con.execute(
                    "SELECT EXISTS (SELECT 1 FROM records) OR EXISTS (SELECT 1 FROM changes) "
                    "OR EXISTS (SELECT 1 FROM rejections) OR EXISTS (SELECT 1 FROM "
                    "source_state)").fetchall()[0][0]
                return meta["target"] if has_state else None
            finally:
                con.close()

    def stored_target(self, sync: str) -> str | None:
        """The target identity stored with a sync's state (see :mod:`conn.state.target`)."""
        with shared.reading(self.sync_path(sync)) as storage:
            if storage is not None:
                with shared.cursor(storage) as cur:
                    rows = cur.execute("SELECT value FROM meta WHERE key = 'target'").fetchall()
                return rows[0][0] if rows else None
            if not self.sync_path(sync).exists():
                return None
            con, meta = self._open_sync_file(sync, read_only=True, readable_from=1)
            try:
                return meta.get("target")
            finally:
                con.close()

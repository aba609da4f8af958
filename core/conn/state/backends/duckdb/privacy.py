"""The embedded store's :class:`~conn.state.contracts.PrivacyStore`.

The project-wide tables (salt, suppression list, pending erasures, ledger) live in
``state/runs.duckdb`` next to the run history (state format 5). A subject is purged from a
sync's file under that sync's run lock.

DuckDB leaves the bytes of deleted rows in the file's free blocks (and in its WAL until a
checkpoint), so every operation that removes a person's values rewrites the file it
changed: a fresh file is filled by ``COPY FROM DATABASE``, fsynced and renamed over the
old one. The sorted-state cache of a purged sync is discarded (the next run rebuilds it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from conn.errors import StateError
from conn.state.backends.duckdb import migrations
from conn.state.backends.duckdb.connection import connect, runs_lock
from conn.state.backends.duckdb.queries import FIND
from conn.state.backends.duckdb.sorted_cache import SortedCache, fsync_dir
from conn.state.contracts import LEDGER_ROOT, PENDING_COLUMNS, PrivacyStore, chain_hash
from conn.state.locks import SyncFileLock

if TYPE_CHECKING:
    from conn.state.backends.duckdb.store import DuckDBStateStore

def rewrite(path: Path, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Rewrite the DuckDB file ``path`` (closed by the caller, or ``con``'s open
    file, which is closed) into a fresh file holding only its live rows."""
    if con is not None:
        con.close()
    tmp = path.with_name(path.name + ".rewrite")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    new = connect(tmp)
    try:
        target = new.execute("SELECT current_database()").fetchall()[0][0]
        quoted = str(path).replace("'", "''")
        new.execute(f"ATTACH '{quoted}' AS conn_old (READ_ONLY)")
        new.execute(f'COPY FROM DATABASE conn_old TO "{target}"')
        new.execute("DETACH conn_old")
        new.execute("CHECKPOINT")
    finally:
        new.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    fsync_dir(path.parent)


class DuckDBPrivacy(PrivacyStore):
    """Privacy tables of a :class:`DuckDBStateStore`."""

    def __init__(self, store: DuckDBStateStore) -> None:
        self.store = store

    @contextmanager
    def _db(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection | None]:
        with self.store._runs_db(read_only=read_only) as con:
            yield con

    def _rewrite_runs(self) -> None:
        """Rewrite the run-history file without the free blocks of deleted rows."""
        path = self.store.root / "state" / "runs.duckdb"
        if path.exists():
            with runs_lock(self.store.root):
                rewrite(path)

    def salt(self, create: bool = True) -> bytes | None:
        with self._db(read_only=not create) as con:
            if con is None:
                return None
            rows = con.execute("SELECT salt FROM privacy_salt WHERE id = 1").fetchall()
            if rows:
                return bytes(rows[0][0])
            if not create:
                return None
            con.execute("INSERT INTO privacy_salt VALUES (1, ?, now())",
                        [secrets.token_bytes(32)])
            return bytes(con.execute("SELECT salt FROM privacy_salt WHERE id = 1")
                         .fetchall()[0][0])

    def suppressed(self) -> pa.Array:
        with self._db(read_only=True) as con:
            if con is None:
                return pa.array([], pa.string())
            table = con.sql("SELECT digest FROM suppression").to_arrow_table()
            return table.column(0).combine_chunks().cast(pa.string())

    def suppress(self, digests: list[str], receipt_id: str) -> None:
        with self._db() as con:
            assert con is not None
            con.register("_d", pa.table({"d": pa.array(sorted(set(digests)), pa.string())}))
            con.execute("INSERT INTO suppression SELECT d, ?, now() FROM _d WHERE d NOT IN "
                        "(SELECT digest FROM suppression)", [receipt_id])
            con.unregister("_d")

    def find(self, sync: str, exact: list[str], emails: list[str]) -> list[dict[str, Any]]:
        path = self.store.sync_path(sync)
        if not path.exists():
            return []
        con, meta = self.store._open_sync_file(sync, read_only=True, readable_from=4)
        try:
            if not meta:
                return []
            con.register("_exact", pa.table({"v": pa.array(exact, pa.string())}))
            con.register("_emails", pa.table({"v": pa.array(emails, pa.string())}))
            cur = con.execute(FIND)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()

    def purge(self, sync: str, keys: list[str], texts: list[str], *,
              retired_only: bool = False) -> None:
        path = self.store.sync_path(sync)
        self._purge_retired(path, keys)
        if retired_only or not keys or not path.exists():
            return
        lock = SyncFileLock(self.store.root / "locks", sync, "conn-forget").acquire()
        try:
            con, _ = self.store._open_sync_file(sync)
            try:
                con.register("_k", pa.table({"k": pa.array(keys, pa.string())}))
                con.begin()
                if "first_acked" in migrations.table_names(con):
                    # Since when the person was delivered is about them too.
                    con.execute("DELETE FROM first_acked WHERE kid IN (SELECT kid FROM records"
                                " WHERE key IN (SELECT k FROM _k))")
                for table in ("records", "changes", "rejections"):
                    con.execute(f"DELETE FROM {table} WHERE key IN (SELECT k FROM _k)")
                for text in texts:
                    con.execute("DELETE FROM rejections WHERE position(? IN reason) > 0 "
                                "OR position(? IN coalesce(excerpt, '')) > 0", [text, text])
                # The planner's cache described the old records.
                migrations.write_meta(con, {"sorted_cache_generation": os.urandom(16).hex()})
                con.commit()
                con.execute("CHECKPOINT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.close()
                raise
            rewrite(path, con)
            SortedCache(path).discard()
        except duckdb.Error as exc:
            raise StateError(f"state file {path}: {exc}") from exc
        finally:
            lock.release()

    def _purge_retired(self, path: Path, keys: list[str]) -> None:
        """The sync's retired states (``--new-target`` keeps them under
        ``state/retired/``): records whose key or match value (trimmed, lowercased) is
        one of ``keys`` go; a file that changed is rewritten."""
        if not keys:
            return
        for old in sorted((path.parent / "retired").glob(f"{path.stem}.*.duckdb")):
            con = duckdb.connect(str(old))
            try:
                con.register("_k", pa.table({"k": pa.array(keys, pa.string())}))
                gone = 0
                for table in ("records", "changes"):
                    gone += con.execute(
                        f"DELETE FROM {table} WHERE key IN (SELECT k FROM _k) OR "
                        "lower(trim(match_value)) IN (SELECT k FROM _k)").fetchall()[0][0]
                gone += con.execute("DELETE FROM rejections WHERE key IN (SELECT k FROM _k)"
                                    ).fetchall()[0][0]
                con.execute("CHECKPOINT")
            except BaseException:
                con.close()
                raise
            if gone:
                rewrite(old, con)
            else:
                con.close()

    def scrub_history(self, texts: list[str], scrub: Callable[[str], str]) -> None:
        with self._db() as con:
            assert con is not None
            hit = " OR ".join(["position(? IN report) > 0"] * len(texts)) or "false"
            rows = con.execute(f"SELECT rowid, report FROM runs WHERE {hit}",
                               texts).fetchall()
            for rowid, report in rows:
                con.execute("UPDATE runs SET report = ? WHERE rowid = ?",
                            [scrub(report), rowid])
        self._rewrite_runs()

    def pending(self) -> list[dict[str, Any]]:
        with self._db(read_only=True) as con:
            if con is None:
                return []
            cur = con.execute(f"SELECT {', '.join(PENDING_COLUMNS)} FROM erasures_pending "
                              "ORDER BY created_at, id")
            return [dict(zip(PENDING_COLUMNS, r, strict=True)) for r in cur.fetchall()]

    def add_pending(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = pa.Table.from_pylist([{c: r.get(c) for c in PENDING_COLUMNS} for r in rows],
                                     schema=_PENDING_SCHEMA)
        with self._db() as con:
            assert con is not None
            con.register("_p", table)
            con.execute(f"INSERT INTO erasures_pending SELECT {', '.join(PENDING_COLUMNS)}, "
                        "now() FROM _p")
            con.unregister("_p")

    def settle(self, ids: list[str]) -> None:
        if not ids:
            return
        with self._db() as con:
            assert con is not None
            con.register("_i", pa.table({"i": pa.array(ids, pa.string())}))
            con.execute("DELETE FROM erasures_pending WHERE id IN (SELECT i FROM _i)")
            con.unregister("_i")
        self._rewrite_runs()

    def ledger(self) -> list[dict[str, Any]]:
        with self._db(read_only=True) as con:
            if con is None:
                return []
            cur = con.execute("SELECT seq, receipt_id, body, prev, hash FROM ledger "
                              "ORDER BY seq")
            cols = ("seq", "receipt_id", "body", "prev", "hash")
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def append(self, receipt_id: str, body: str) -> dict[str, Any]:
        with self._db() as con:
            assert con is not None
            con.begin()
            try:
                last = con.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1"
                                   ).fetchall()
                seq, prev = (last[0][0] + 1, last[0][1]) if last else (1, LEDGER_ROOT)
                entry = {"seq": seq, "receipt_id": receipt_id, "body": body, "prev": prev,
                         "hash": chain_hash(prev, body)}
                con.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?)",
                            [seq, receipt_id, body, prev, entry["hash"]])
                con.commit()
            except BaseException:
                con.rollback()
                raise
            return entry


_PENDING_SCHEMA = pa.schema([("id", pa.string()), ("receipt_id", pa.string()),
                             ("target", pa.int32()), ("sync", pa.string()),
                             ("match_value", pa.string()), ("match_type", pa.string()),
                             ("key_digest", pa.string()), ("hash", pa.uint64())])

__all__ = ["DuckDBPrivacy", "rewrite"]

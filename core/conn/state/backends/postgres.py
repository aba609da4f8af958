"""PostgreSQL state backend: shared state for syncs run from several machines.

All syncs of a project share one schema (``conn_state`` unless the URL's ``schema``
query parameter names another). Runs are serialised per sync with session-level advisory
locks held on a dedicated connection: the server releases them when the holder's session
ends, so a crashed or killed runner never leaves a stale lock. Each commit is one
transaction (record upserts or deletes, rejections, progress). Key ids are stored as
``kid XOR 2**63`` in a ``bigint`` so that signed order equals the planner's unsigned order
and the state streams out of the ``(sync, kid)`` index already sorted.
"""

from __future__ import annotations

import json
import logging
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import duckdb
import numpy as np
import pyarrow as pa

from conn.errors import StateError, SyncLocked
from conn.state import contracts, history
from conn.state.backends.postgres_privacy import DDL as PRIVACY_DDL
from conn.state.backends.postgres_privacy import PostgresPrivacy
from conn.state.contracts import NULL_KEY_ID, PrivacyStore, StateStore, Storage, SyncState
from conn.state.experiments import ExperimentStore
from conn.state.locks import describe_holder, holder_info
from conn.state.planner import PlanningSyncState, row_hashes
from conn.state.target import OnChange, SyncTarget, decide
from conn.state.triggers import TriggerStore

log = logging.getLogger(__name__)

APP_ID = "conn-state"
#: 2: typed match values (``records.match_type``), rejections keep ``since`` and
#: ``attempts``, ``syncs.target`` holds the target identity (see conn.state.target).
#: 3: the privacy tables of ``conn forget`` (:mod:`.postgres_privacy`).
#: 4: ``rejections.excerpt``, the vendor exchange that rejected a row (JSON text; see
#: :mod:`conn.http.exchange`).
FORMAT_VERSION = 4
_FLIP = np.uint64(1 << 63)
#: NULL_KEY_ID as stored here (key ids are stored XOR 2^63).
_NULL_KID = int(np.array([NULL_KEY_ID], dtype=np.uint64)[0] ^ _FLIP) - (1 << 64)

DDL = """
CREATE TABLE IF NOT EXISTS {s}.records (sync text NOT NULL, kid bigint NOT NULL,
  key text NOT NULL, hash bigint, match_value text, partition smallint NOT NULL,
  run_id text, acked_at timestamptz DEFAULT now(), PRIMARY KEY (sync, kid));
CREATE TABLE IF NOT EXISTS {s}.rejections (sync text NOT NULL, kid bigint NOT NULL,
  key text, partition smallint NOT NULL, reason text, op text, run_id text,
  rejected_at timestamptz DEFAULT now());
CREATE INDEX IF NOT EXISTS rejections_sync_kid ON {s}.rejections (sync, kid);
CREATE TABLE IF NOT EXISTS {s}.progress (sync text NOT NULL, run_id text NOT NULL,
  started_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
  batches bigint DEFAULT 0, acknowledged bigint DEFAULT 0, rejected bigint DEFAULT 0,
  deleted bigint DEFAULT 0, PRIMARY KEY (sync, run_id));
CREATE TABLE IF NOT EXISTS {s}.syncs (sync text PRIMARY KEY, source_state text,
  hash_canary text, hash_engine text);
CREATE TABLE IF NOT EXISTS {s}.lock_holders (sync text NOT NULL, part integer NOT NULL,
  info text, PRIMARY KEY (sync, part));
CREATE TABLE IF NOT EXISTS {s}.runs (sync text, run_id text, status text,
  started_at double precision, seconds double precision, rows_read bigint,
  inserted bigint, updated bigint, deleted bigint, unchanged bigint, rejected bigint,
  pending bigint, recorded_at double precision, report jsonb);
ALTER TABLE {s}.records ADD COLUMN IF NOT EXISTS match_type text;
ALTER TABLE {s}.rejections ADD COLUMN IF NOT EXISTS since timestamptz;
ALTER TABLE {s}.rejections ADD COLUMN IF NOT EXISTS attempts integer;
ALTER TABLE {s}.syncs ADD COLUMN IF NOT EXISTS target text;
ALTER TABLE {s}.records ADD COLUMN IF NOT EXISTS first_acked_at timestamptz;
ALTER TABLE {s}.rejections ADD COLUMN IF NOT EXISTS excerpt text;
"""


def _to_pg(kids: np.ndarray) -> list[int]:
    return (np.asarray(kids, dtype=np.uint64) ^ _FLIP).view(np.int64).tolist()


def _from_pg(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).view(np.uint64) ^ _FLIP


def _i64(values: np.ndarray | pa.Array) -> list[int | None]:
    arr = values if isinstance(values, np.ndarray) else values.to_numpy(zero_copy_only=False)
    return np.asarray(arr, dtype=np.uint64).view(np.int64).tolist()


def _iso(t: Any) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", t.utctimetuple())


def _lock_key(name: str) -> int:
    """The first half of an advisory lock's key (the second is the partition)."""
    return zlib.crc32(name.encode()) - (1 << 31)


class PostgresStorage(Storage):
    """:class:`Storage` for one sync in the shared schema."""

    def __init__(self, conn: Any, schema: str, sync: str) -> None:
        self.conn = conn
        self.s = schema
        self.sync = sync

    def load(self, partitions: frozenset[int] | None) -> tuple[np.ndarray, np.ndarray]:
        where = "sync = %s"
        params: list[Any] = [self.sync]
        if partitions is not None:
            where += " AND partition = ANY(%s)"
            params.append(sorted(partitions))
        kids: list[int] = []
        hashes: list[int] = []
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT kid, coalesce(hash, 0) FROM {self.s}.records WHERE {where} "
                        "ORDER BY kid", params)
            while rows := cur.fetchmany(100_000):
                k, h = zip(*rows, strict=True)
                kids.extend(k)
                hashes.extend(h)
        self.conn.commit()
        return (_from_pg(np.array(kids, dtype=np.int64)),
                np.array(hashes, dtype=np.int64).view(np.uint64))

    def begin_run(self, run_id: str) -> None:
        self.conn.execute(f"INSERT INTO {self.s}.progress (sync, run_id) VALUES (%s, %s) "
                          "ON CONFLICT DO NOTHING", [self.sync, run_id])
        self.conn.commit()

    def commit(self, run_id: str, rows: pa.Table, rejected: pa.Table, *,
               deletes: bool, match_type: str | None = None) -> None:
        s, sync = self.s, self.sync
        kids = _to_pg(rows.column("kid").to_numpy())
        rkids = _to_pg(rejected.column("kid").to_numpy())
        with self.conn.transaction(), self.conn.cursor() as cur:
            if deletes:
                cur.execute(f"DELETE FROM {s}.records WHERE sync = %s AND kid = ANY(%s)",
                            [sync, kids])
            elif kids:
                cur.execute(
                    # A key delivered before keeps its first delivery's time (rows of
                    # a conn that did not record it: their oldest known, acked_at).
                    f"""INSERT INTO {s}.records (sync, kid, key, hash, match_value, partition,
                    run_id, match_type, first_acked_at) SELECT %s, * , %s, %s, now() FROM
                    unnest(%s::bigint[], %s::text[], %s::bigint[], %s::text[],
                    %s::smallint[]) ON CONFLICT (sync, kid) DO UPDATE SET key = excluded.key,
                    hash = excluded.hash, match_value = excluded.match_value,
                    match_type = excluded.match_type, run_id = excluded.run_id,
                    first_acked_at = coalesce({s}.records.first_acked_at,
                    {s}.records.acked_at), acked_at = now()""",
                    [sync, run_id, match_type, kids, rows.column("key").to_pylist(),
                     _i64(rows.column("hash").fill_null(0).combine_chunks()),
                     rows.column("match_value").cast(pa.string()).to_pylist(),
                     rows.column("partition").to_pylist()])
            if rkids:
                args = [rkids, rejected.column("key").to_pylist(),
                        rejected.column("partition").to_pylist(),
                        rejected.column("reason").to_pylist(),
                        rejected.column("excerpt").to_pylist()]
                # A key rejected again in this run keeps one entry with both reasons; a
                # key rejected again after earlier runs keeps the time of its first.
                cur.execute(
                    f"""UPDATE {s}.rejections e SET reason = e.reason || '; ' || t.r,
                    excerpt = coalesce(e.excerpt, t.x) FROM unnest(%s::bigint[],
                    %s::text[], %s::smallint[], %s::text[], %s::text[])
                    AS t(k, key, p, r, x) WHERE e.sync = %s AND e.run_id = %s AND e.kid = t.k
                    AND t.k <> %s AND position(t.r IN e.reason) = 0""",
                    [*args, sync, run_id, _NULL_KID])
                cur.execute(
                    f"""INSERT INTO {s}.rejections (sync, kid, key, partition, reason, op,
                    run_id, since, attempts, excerpt) SELECT %s, k, key, p, r, %s, %s,
                    coalesce(e.since, now()), coalesce(e.attempts, 0) + 1, x
                    FROM unnest(%s::bigint[], %s::text[], %s::smallint[], %s::text[],
                    %s::text[]) AS t(k, key, p, r, x) LEFT JOIN (SELECT kid, min(since) AS since,
                    max(attempts) AS attempts FROM {s}.rejections WHERE sync = %s AND
                    run_id <> %s GROUP BY kid) e ON e.kid = t.k
                    WHERE t.k = %s OR NOT EXISTS (SELECT 1 FROM {s}.rejections x WHERE
                    x.sync = %s AND x.run_id = %s AND x.kid = t.k)""",
                    [sync, "delete" if deletes else "write", run_id, *args, sync, run_id,
                     _NULL_KID, sync, run_id])
            cur.execute(f"DELETE FROM {s}.rejections WHERE sync = %s AND run_id <> %s AND "
                        "kid = ANY(%s)", [sync, run_id, kids + rkids])
            col = "deleted" if deletes else "acknowledged"
            cur.execute(f"""UPDATE {s}.progress SET batches = batches + 1, {col} = {col} + %s,
                rejected = rejected + %s, updated_at = now() WHERE sync = %s AND run_id = %s""",
                        [rows.num_rows, rejected.num_rows, sync, run_id])

    def lookup(self, kids: np.ndarray, batch_rows: int) -> Iterator[pa.RecordBatch]:
        for lo in range(0, len(kids), batch_rows):
            part = _to_pg(kids[lo:lo + batch_rows])
            rows = self.conn.execute(f"SELECT key, match_value, match_type, hash FROM "
                                     f"{self.s}.records WHERE sync = %s AND kid = ANY(%s)",
                                     [self.sync, part]).fetchall()
            self.conn.commit()
            if rows:
                hashes = np.array([r[3] or 0 for r in rows], dtype=np.int64).view(np.uint64)
                yield pa.RecordBatch.from_pydict({
                    "key": pa.array([r[0] for r in rows], pa.string()),
                    "match_value": pa.array([r[1] for r in rows], pa.string()),
                    "match_type": pa.array([r[2] for r in rows], pa.string()),
                    "hash": pa.array(hashes, pa.uint64())})

    def rejection_kids(self, partitions: frozenset[int] | None) -> np.ndarray:
        rows = self.conn.execute(f"SELECT kid FROM {self.s}.rejections WHERE sync = %s",
                                 [self.sync]).fetchall()
        self.conn.commit()
        return _from_pg(np.array([r[0] for r in rows], dtype=np.int64))

    def clear_rejections(self, kids: np.ndarray) -> None:
        self.conn.execute(f"DELETE FROM {self.s}.rejections WHERE sync = %s AND "
                          "kid = ANY(%s)", [self.sync, _to_pg(kids)])
        self.conn.commit()

    def get_source_state(self) -> str | None:
        rows = self.conn.execute(f"SELECT source_state FROM {self.s}.syncs WHERE sync = %s",
                                 [self.sync]).fetchall()
        self.conn.commit()
        return rows[0][0] if rows else None

    def set_source_state(self, run_id: str, value: str) -> None:
        self.conn.execute(f"INSERT INTO {self.s}.syncs (sync, source_state) VALUES (%s, %s) "
                          "ON CONFLICT (sync) DO UPDATE SET source_state = excluded.source_state",
                          [self.sync, value])
        self.conn.commit()


class PostgresStateStore(StateStore):
    """State in a PostgreSQL database (``postgresql://...``; ``?schema=NAME``)."""

    def __init__(self, dsn: str, schema: str = "conn_state") -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
            raise StateError(f"invalid state schema name {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._prepared = False

    @classmethod
    def open(cls, url: str | None, project_dir: Any) -> PostgresStateStore:
        """``url``: a libpq URL; the ``schema`` query parameter is conn's."""
        if not url:
            raise StateError("the postgres state backend needs state.url, e.g. "
                             "postgresql://user@host:5432/db")
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "conn_state")
        dsn = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(dsn, schema)

    def _connect(self, autocommit: bool = False) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StateError("the postgres state backend needs psycopg: "
                             "pip install 'conn[postgres]'") from exc
        try:
            conn = psycopg.connect(self.dsn, autocommit=autocommit)
        except psycopg.Error as exc:
            raise StateError(f"cannot connect to the state database: {exc}") from exc
        if not self._prepared:
            try:
                self._prepare(psycopg)
            except BaseException:
                conn.close()
                raise
        return conn

    def _prepare(self, psycopg: Any) -> None:
        """Create or check the schema (serialised by a transaction-level advisory lock)."""
        s = self.schema
        with psycopg.connect(self.dsn) as conn:  # commits on a clean exit
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", [_lock_key("conn-schema")])
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, "
                         "value text)")
            meta = dict(conn.execute(f"SELECT key, value FROM {s}.meta").fetchall())
            if not meta:
                conn.execute(f"INSERT INTO {s}.meta VALUES ('app_id', %s), "
                             "('format_version', %s)", [APP_ID, str(FORMAT_VERSION)])
            elif meta.get("app_id") != APP_ID:
                raise StateError(f"schema {s!r} belongs to another application (app_id "
                                 f"{meta.get('app_id')!r}); set ?schema= to another name")
            elif int(meta.get("format_version", "0")) > FORMAT_VERSION:
                raise StateError(f"schema {s!r} was written by a newer conn (state format "
                                 f"{meta['format_version']}); upgrade conn")
            conn.execute(DDL.format(s=s))  # creates, or adds what an older format lacks
            conn.execute(PRIVACY_DDL.format(s=s))
            conn.execute(f"UPDATE {s}.meta SET value = %s WHERE key = 'format_version'",
                         [str(FORMAT_VERSION)])
        self._prepared = True

    def notes(self) -> contracts.Notes:
        """See :class:`~conn.state.contracts.Notes` (``<schema>.notes``)."""
        from conn.state.backends.notes import PostgresNotes

        return PostgresNotes(self)

    def privacy(self) -> PrivacyStore:
        """See :class:`~conn.state.contracts.PrivacyStore` (tables in the schema)."""
        return PostgresPrivacy(self)

    def experiment_store(self) -> ExperimentStore:
        """See :mod:`conn.state.experiments` (tables in the schema)."""
        from conn.state.backends.postgres_experiments import PostgresExperiments

        return PostgresExperiments(self)

    def trigger_state(self, sync: str, trigger: str) -> TriggerStore:
        """See :class:`~conn.state.triggers.TriggerStore` (table ``trigger_state`` in the
        schema; the caller closes it)."""
        from conn.state.backends.postgres_triggers import PostgresTriggerStore

        return PostgresTriggerStore(self, sync, trigger)

    # --- locks --------------------------------------------------------------------------

    def _lock(self, conn: Any, sync: str, run_id: str,
              partitions: frozenset[int] | None) -> None:
        # Scoped to the schema: advisory locks are database-wide, and projects sharing a
        # database (one schema each) may well have syncs of the same name.
        key = _lock_key(f"{self.schema}\x1f{sync}")
        targets = [(-1, partitions is None)] + [(p, True) for p in sorted(partitions or ())]
        for part, exclusive in targets:
            fn = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
            ok = conn.execute(f"SELECT {fn}(%s, %s)", [key, part]).fetchall()[0][0]
            if not ok:
                row = conn.execute(f"SELECT info FROM {self.schema}.lock_holders WHERE "
                                   "sync = %s AND part = %s", [sync, part]).fetchall()
                info = json.loads(row[0][0]) if row and row[0][0] else None
                raise SyncLocked(describe_holder(sync, info))
            if exclusive:
                conn.execute(f"INSERT INTO {self.schema}.lock_holders VALUES (%s, %s, %s) "
                             "ON CONFLICT (sync, part) DO UPDATE SET info = excluded.info",
                             [sync, part, json.dumps(holder_info(run_id))])

    @contextmanager
    def open_sync(self, sync: str, run_id: str, *, full_resync: bool = False,
                  partitions: frozenset[int] | None = None,
                  target: SyncTarget | None = None,
                  on_target_change: OnChange = None) -> Iterator[SyncState]:
        """See :meth:`StateStore.open_sync`; ``partitions`` as in the DuckDB store, and
        here workers on several machines may each open different partitions at once."""
        lock_conn = self._connect(autocommit=True)
        try:
            self._lock(lock_conn, sync, run_id, partitions)
            conn = self._connect()
            try:
                storage = PostgresStorage(conn, self.schema, sync)
                if target is not None:
                    self._settle_target(conn, sync, target, on_target_change)
                self._check_canary(conn, sync, full_resync)
                storage.begin_run(run_id)
                with PlanningSyncState(storage, run_id, full_resync=full_resync,
                                       partitions=partitions) as st:
                    yield st
            finally:
                conn.close()
        finally:
            self._unlock(lock_conn)

    def _settle_target(self, conn: Any, sync: str, target: SyncTarget,
                       on_change: OnChange) -> None:
        """Compare the sync's stored target with ``target`` (see conn.state.target); for
        a new target the old state moves to the sync name ``<sync>@retired-<time>``."""
        s = self.schema
        stored, has_state = self._target_of(conn, sync)
        decision = decide(sync, stored, target, on_change, has_state=has_state)
        with conn.transaction():
            if decision == "reset":
                retired = f"{sync}@retired-{time.strftime('%Y%m%dT%H%M%S')}"
                for table in ("records", "rejections", "progress", "syncs"):
                    conn.execute(f"UPDATE {s}.{table} SET sync = %s WHERE sync = %s",
                                 [retired, sync])
            if decision != "keep":
                conn.execute(f"""INSERT INTO {s}.syncs (sync, target) VALUES (%s, %s)
                    ON CONFLICT (sync) DO UPDATE SET target = excluded.target""",
                             [sync, target.to_json()])

    def _target_of(self, conn: Any, sync: str) -> tuple[str | None, bool]:
        """The stored target and whether the sync's state holds anything."""
        s = self.schema
        row = conn.execute(f"SELECT target, source_state FROM {s}.syncs WHERE sync = %s",
                           [sync]).fetchall()
        has_state = bool(row and row[0][1] is not None) or bool(conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {s}.records WHERE sync = %s) OR EXISTS "
            f"(SELECT 1 FROM {s}.rejections WHERE sync = %s)", [sync, sync]).fetchall()[0][0])
        return (row[0][0] if row else None), has_state

    def bound_target(self, sync: str) -> str | None:
        with self._connect() as conn:
            stored, has_state = self._target_of(conn, sync)
        return stored if has_state else None

    def stored_target(self, sync: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT target FROM {self.schema}.syncs WHERE sync = %s",
                               [sync]).fetchall()
        return row[0][0] if row else None

    def delivered(self, sync: str, keys: list[str]) -> list[dict[str, Any]]:
        if not keys:
            return []
        with self._connect() as conn:
            rows = conn.execute(
                f"""SELECT key, match_value, match_type, acked_at, run_id,
                coalesce(first_acked_at, acked_at) FROM {self.schema}.records
                WHERE sync = %s AND key = ANY(%s)""",
                [sync, list(keys)]).fetchall()
        return [{"key": r[0], "match_value": r[1], "match_type": r[2],
                 "acked_at": _iso(r[3]), "run_id": r[4], "first_acked_at": _iso(r[5])}
                for r in rows]

    @staticmethod
    def _unlock(lock_conn: Any) -> None:
        """Release the run's locks now: closing the session releases them too, but only
        once the server has noticed, and a run started right after this one was then
        refused now and then. (A runner that crashes still leaves no stale lock.)"""
        try:
            lock_conn.execute("SELECT pg_advisory_unlock_all()")
        except Exception as exc:  # a broken session: closing it releases the locks
            log.debug("releasing the advisory locks explicitly failed: %s", exc)
        finally:
            lock_conn.close()

    def _check_canary(self, conn: Any, sync: str, full_resync: bool) -> None:
        s = self.schema
        with duckdb.connect() as hc:
            current = row_hashes.canary(hc)
        row = conn.execute(f"SELECT hash_canary, hash_engine FROM {s}.syncs WHERE sync = %s",
                           [sync]).fetchall()
        stored = row[0][0] if row else None
        if stored not in (None, current) and not conn.execute(
                f"SELECT 1 FROM {s}.records WHERE sync = %s LIMIT 1", [sync]).fetchall():
            stored = None  # no records were hashed with the old function: none to compare
        action = row_hashes.check_canary(stored, current, full_resync)
        if action == "refuse":
            raise row_hashes.hash_changed(f"sync {sync!r}", row[0][1])
        if action == "rekey":
            self._rekey(conn, sync)
        if action != "ok":
            conn.execute(f"""INSERT INTO {s}.syncs (sync, hash_canary, hash_engine)
                VALUES (%s, %s, %s) ON CONFLICT (sync) DO UPDATE SET
                hash_canary = excluded.hash_canary, hash_engine = excluded.hash_engine""",
                         [sync, current, row_hashes.hash_engine()])
        conn.commit()

    def _rekey(self, conn: Any, sync: str) -> None:
        s = self.schema
        for table in ("records", "rejections"):
            rows = conn.execute(f"SELECT ctid::text, key FROM {s}.{table} WHERE sync = %s",
                                [sync]).fetchall()
            if not rows:
                continue
            with duckdb.connect() as hc:
                kids = row_hashes.key_ids(hc, pa.array([r[1] for r in rows], pa.string()))
            conn.execute(f"""UPDATE {s}.{table} t SET kid = u.k, partition = u.p FROM
                unnest(%s::text[], %s::bigint[], %s::smallint[]) AS u(c, k, p)
                WHERE t.ctid = u.c::tid""",
                         [[r[0] for r in rows], _to_pg(kids),
                          row_hashes.partitions_of(kids).astype(int).tolist()])

    # --- history ------------------------------------------------------------------------

    def record_run(self, sync: str, run_id: str, report: dict[str, Any]) -> None:
        values = history.sql_values(history.history_row(sync, run_id, report))
        with self._connect() as conn:
            conn.execute(f"INSERT INTO {self.schema}.runs VALUES "
                         f"({', '.join(['%s'] * len(values))})", values)

    def runs(self, sync: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, params = ("WHERE sync = %s", [sync]) if sync is not None else ("", [])
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {self.schema}.runs {where} ORDER BY recorded_at DESC "
                        f"LIMIT {int(limit)}", params)
            cols = [d.name for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def rejections(self, sync: str, limit: int | None = None) -> list[dict[str, Any]]:
        lim = f" LIMIT {int(limit)}" if limit is not None else ""
        with self._connect() as conn:
            rows = conn.execute(
                f"""SELECT key, reason, op, run_id, rejected_at, coalesce(since, rejected_at),
                coalesce(attempts, 1), excerpt FROM {self.schema}.rejections
                WHERE sync = %s ORDER BY rejected_at DESC, key{lim}""", [sync]).fetchall()
        return [{"key": r[0], "reason": r[1], "op": r[2], "run_id": r[3],
                 "at": _iso(r[4]), "since": _iso(r[5]), "attempts": r[6],
                 "excerpt": r[7]} for r in rows]

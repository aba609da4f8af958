"""The PostgreSQL backend's trigger state (:class:`conn.state.triggers.TriggerStore`):
table ``trigger_state`` in the project's schema, one row per sync, trigger and key,
created on first use. Key ids are stored as ``kid XOR 2**63`` in a ``bigint`` like the
sync tables' (signed order is the planner's unsigned order), so a run reads the entries
already sorted by id. A commit is one transaction upserting the changed entries. The
canary of DuckDB's hash function is kept in ``trigger_meta``: when it differs, the ids
are recomputed from the stored keys."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from conn.state.triggers import SCHEMA, STORED, TriggerStore

if TYPE_CHECKING:
    from conn.state.backends.postgres import PostgresStateStore

DDL = """
CREATE TABLE IF NOT EXISTS {s}.trigger_state (sync text NOT NULL, trigger text NOT NULL,
  kid bigint NOT NULL, key text NOT NULL, armed boolean, value text,
  fired_at double precision, seq bigint, PRIMARY KEY (sync, trigger, kid, key));
CREATE TABLE IF NOT EXISTS {s}.trigger_meta (name text PRIMARY KEY, value text);
"""
_COLS = "armed, value, fired_at, seq"


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    from conn.state.backends.postgres import _from_pg

    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in SCHEMA.names]
    kids = _from_pg(np.array(cols[0], dtype=np.int64))
    return pa.Table.from_arrays(
        [pa.array(kids, pa.uint64()),
         *[pa.array(c, t) for c, t in zip(cols[1:], SCHEMA.types[1:], strict=True)]],
        schema=SCHEMA)


class PostgresTriggerStore(TriggerStore):
    """One trigger's entries for one sync, in the state's PostgreSQL schema."""

    def __init__(self, store: PostgresStateStore, sync: str, trigger: str) -> None:
        self.s, self.sync, self.trigger = store.schema, sync, trigger
        self._store = store
        self._conn = store._connect()
        #: The planning and the delivery thread share the connection.
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                               [f"{self.s}.trigger_state"])
            self._conn.execute(DDL.format(s=self.s))
            self._conn.commit()
        self._check_canary()

    def _check_canary(self) -> None:
        from conn.state.planner.row_hashes import canary, connect

        with connect() as duck:
            now = canary(duck)
        with self._lock:
            row = self._conn.execute(f"SELECT value FROM {self.s}.trigger_meta WHERE "
                                     "name = 'canary'").fetchone()
            if row is not None and row[0] != now:
                self._rekey()
            self._conn.execute(f"INSERT INTO {self.s}.trigger_meta VALUES ('canary', %s) "
                               "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                               [now])
            self._conn.commit()

    def _rekey(self) -> None:
        """Every stored id recomputed from its key (another DuckDB hashed them)."""
        from conn.state.backends.postgres import _to_pg
        from conn.state.planner.row_hashes import connect, key_ids

        keys = [r[0] for r in self._conn.execute(
            f"SELECT DISTINCT key FROM {self.s}.trigger_state").fetchall()]
        if not keys:
            return
        with connect() as duck:
            kids = key_ids(duck, pa.array(keys, pa.string()))
        self._conn.execute(
            f"UPDATE {self.s}.trigger_state s SET kid = t.kid FROM unnest(%s::text[], "
            "%s::bigint[]) AS t(key, kid) WHERE s.key = t.key", [keys, _to_pg(kids)])

    def load(self, keys: pa.Array, kids: np.ndarray) -> pa.Table:
        from conn.state.backends.postgres import _to_pg

        n = len(keys)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT t.pos, {', '.join('s.' + c for c in _COLS.split(', '))} FROM "
                "unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS t(kid, key, pos) "
                f"JOIN {self.s}.trigger_state s ON s.sync = %s AND s.trigger = %s AND "
                "s.kid = t.kid AND s.key = t.key",
                [_to_pg(kids), keys.to_pylist(), self.sync, self.trigger]).fetchall()
            self._conn.commit()
        pos = np.array([r[0] - 1 for r in rows], dtype=np.int64)
        at = np.full(n, -1, dtype=np.int64)
        at[pos] = np.arange(len(rows))
        found = at >= 0
        idx = pa.array(at, pa.int64(), mask=~found)
        cols: list[Any] = list(zip(*rows, strict=True))[1:] if rows else [[]] * 4
        out: list[pa.Array] = [pa.array(found)]
        out += [pa.array(c, t).take(idx) for c, t in zip(cols, STORED.types[1:], strict=True)]
        return pa.Table.from_arrays(out, schema=STORED)

    def commit(self, rows: pa.Table) -> None:
        from conn.state.backends.postgres import _to_pg

        if rows.num_rows == 0:
            return
        rows = rows.select(SCHEMA.names).cast(SCHEMA)
        cols = [rows.column(n).to_pylist() for n in SCHEMA.names[1:]]
        with self._lock:
            self._conn.execute(
                f"INSERT INTO {self.s}.trigger_state SELECT %s::text, %s::text, t.* FROM unnest("
                "%s::bigint[], %s::text[], %s::boolean[], %s::text[], "
                "%s::double precision[], %s::bigint[]) AS t ON CONFLICT (sync, trigger, "
                "kid, key) DO UPDATE SET armed = EXCLUDED.armed, value = EXCLUDED.value, "
                "fired_at = EXCLUDED.fired_at, seq = EXCLUDED.seq",
                [self.sync, self.trigger,
                 _to_pg(np.asarray(rows.column("kid").to_numpy(), np.uint64)), *cols])
            self._conn.commit()

    def entries(self) -> pa.Table:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT kid, key, {_COLS} FROM {self.s}.trigger_state WHERE sync = %s "
                "AND trigger = %s ORDER BY kid", [self.sync, self.trigger]).fetchall()
            self._conn.commit()
        return _table(rows)

    def forget(self, keys: list[str]) -> int:
        """Remove the entries of ``keys``; the table is vacuumed (no dead row keeps
        them) as ``conn forget`` does with the other tables."""
        if not keys:
            return 0
        with self._lock:
            n = int(self._conn.execute(
                f"DELETE FROM {self.s}.trigger_state WHERE sync = %s AND trigger = %s AND "
                "key = ANY(%s)", [self.sync, self.trigger, keys]).rowcount)
            self._conn.commit()
        if n:
            with self._store._connect(autocommit=True) as conn:
                conn.execute(f"VACUUM {self.s}.trigger_state")
        return n

    def close(self) -> None:
        self._conn.close()

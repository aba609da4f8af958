"""The PostgreSQL backend's experiments (:mod:`conn.state.experiments`): tables
``experiments`` and ``experiment_members`` in the project's schema, created on first use
(several workers share them: members are added with ``ON CONFLICT DO NOTHING``, so the
first assignment of a key wins whichever worker records it)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.state.experiments import MEMBERS_SCHEMA, ExperimentStore

if TYPE_CHECKING:
    from conn.state.backends.postgres import PostgresStateStore

DDL = """
CREATE TABLE IF NOT EXISTS {s}.experiments (name text NOT NULL, sync text NOT NULL,
  percent text NOT NULL, salt text NOT NULL, started_at double precision NOT NULL,
  run_id text NOT NULL, ended_at double precision);
CREATE TABLE IF NOT EXISTS {s}.experiment_members (experiment text NOT NULL,
  key text NOT NULL, arm text NOT NULL, run_id text NOT NULL,
  assigned_at double precision NOT NULL, PRIMARY KEY (experiment, key));
"""


class PostgresExperiments(ExperimentStore):
    """Experiments of a :class:`PostgresStateStore`."""

    def __init__(self, store: PostgresStateStore) -> None:
        self.store = store
        self.s = store.schema
        self._ready = False

    def _connect(self) -> Any:
        conn = self.store._connect()
        if not self._ready:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                         [f"{self.s}.experiments"])
            conn.execute(DDL.format(s=self.s))
            conn.commit()
            self._ready = True
        return conn

    def design(self, name: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT sync, percent, salt, started_at, run_id FROM "
                               f"{self.s}.experiments WHERE name = %s AND ended_at IS NULL",
                               [name]).fetchone()
        if row is None:
            return None
        return dict(zip(("sync", "percent", "salt", "started_at", "run_id"), row,
                        strict=True))

    def begin(self, name: str, sync: str, design: dict[str, str], run_id: str) -> None:
        with self._connect() as conn:
            conn.execute(f"INSERT INTO {self.s}.experiments VALUES (%s, %s, %s, %s, %s, %s, "
                         "NULL)", [name, sync, design["percent"], design["salt"], time.time(),
                                   run_id])

    def archive(self, name: str) -> str:
        with self._connect() as conn:  # one transaction
            n = conn.execute(f"SELECT count(*) FROM {self.s}.experiments WHERE "
                             "starts_with(name, %s)", [name + "#"]).fetchone()[0]
            new = f"{name}#{n + 1}"
            conn.execute(f"UPDATE {self.s}.experiments SET name = %s, ended_at = %s "
                         "WHERE name = %s AND ended_at IS NULL", [new, time.time(), name])
            conn.execute(f"UPDATE {self.s}.experiment_members SET experiment = %s "
                         "WHERE experiment = %s", [new, name])
        return new

    def record(self, name: str, run_id: str, keys: pa.Array, held_out: pa.Array) -> int:
        valid = pc.is_valid(keys)
        keys, held_out = keys.filter(valid), held_out.filter(valid)
        if not len(keys):
            return 0
        arms = pc.if_else(held_out, "holdout", "treatment")
        with self._connect() as conn:
            cur = conn.execute(
                f"INSERT INTO {self.s}.experiment_members SELECT %s, k, a, %s, %s "
                "FROM unnest(%s::text[], %s::text[]) AS t(k, a) ON CONFLICT DO NOTHING",
                [name, run_id, time.time(), keys.to_pylist(), arms.to_pylist()])
            return int(cur.rowcount)

    def members(self, name: str) -> pa.Table:
        with self._connect() as conn:
            rows = conn.execute(f"SELECT key, arm, run_id, assigned_at FROM "
                                f"{self.s}.experiment_members WHERE experiment = %s",
                                [name]).fetchall()
        return pa.Table.from_pylist(
            [dict(zip(MEMBERS_SCHEMA.names, r, strict=True)) for r in rows],
            schema=MEMBERS_SCHEMA)

    def arms(self, name: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(f"SELECT key, arm, run_id, assigned_at FROM "
                                f"{self.s}.experiment_members WHERE experiment = %s AND "
                                "key = ANY(%s)", [name, keys]).fetchall()
        return {k: {"arm": a, "run_id": r, "assigned_at": t} for k, a, r, t in rows}

    def forget(self, keys: list[str]) -> int:
        if not keys:
            return 0
        with self._connect() as conn:
            n = int(conn.execute(f"DELETE FROM {self.s}.experiment_members WHERE "
                                 "key = ANY(%s)", [keys]).rowcount)
        if n:
            # Deleted rows stay in the table's pages until vacuumed (as conn forget's
            # purge of the sync tables does).
            with self.store._connect(autocommit=True) as conn:
                conn.execute(f"VACUUM {self.s}.experiment_members")
        return n

    def experiments(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            cur = conn.execute(
                f"SELECT e.name, e.sync, e.percent, e.salt, e.started_at, e.run_id, "
                f"e.ended_at, count(m.key) FILTER (WHERE m.arm = 'treatment') AS treatment, "
                f"count(m.key) FILTER (WHERE m.arm = 'holdout') AS holdout "
                f"FROM {self.s}.experiments e LEFT JOIN {self.s}.experiment_members m "
                f"ON m.experiment = e.name GROUP BY e.name, e.sync, e.percent, e.salt, "
                f"e.started_at, e.run_id, e.ended_at ORDER BY e.started_at, e.name")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

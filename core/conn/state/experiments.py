"""What a state store keeps of holdout experiments (docs/experiments.md): each
experiment's design (percent, salt, the sync it belongs to, when it started) and its
members (every key that passed the consent gate while it ran, with its arm and the run
that first assigned it).

Members are recorded whether or not the destination then acknowledged the row: the
report compares the groups as assigned (intention to treat), which keeps the two arms
comparable; a member's delivery is in the sync's own state.

:class:`DuckDBExperiments` implements it over one DuckDB connection: an in-memory one for
the memory backend, ``state/experiments.duckdb`` for the embedded store (a file of its
own, so the sync state files and the run history keep their formats). The PostgreSQL
backend has its own (``conn.state.backends.postgres_experiments``).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

MEMBERS_SCHEMA = pa.schema([("key", pa.string()), ("arm", pa.string()),
                            ("run_id", pa.string()), ("assigned_at", pa.float64())])


class ExperimentStore(abc.ABC):
    """Experiments and their members in a project's state store."""

    @abc.abstractmethod
    def design(self, name: str) -> dict[str, Any] | None:
        """The running experiment ``name``: ``sync``, ``percent`` (text), ``salt``,
        ``started_at`` (epoch seconds) and ``run_id``; None if there is none."""

    @abc.abstractmethod
    def begin(self, name: str, sync: str, design: dict[str, str], run_id: str) -> None:
        """Start experiment ``name`` with ``design`` (``percent``, ``salt``)."""

    @abc.abstractmethod
    def archive(self, name: str) -> str:
        """End the running experiment ``name``: it and its members are kept under a new
        name (``NAME#N``, returned) and ``name`` is free for a new design."""

    @abc.abstractmethod
    def record(self, name: str, run_id: str, keys: pa.Array, held_out: pa.Array) -> int:
        """Add the keys not yet members, with their arm; a member keeps the arm and run
        of its first assignment. Returns how many keys were new."""

    @abc.abstractmethod
    def members(self, name: str) -> pa.Table:
        """Every member: ``key``, ``arm`` (``treatment`` or ``holdout``), ``run_id``,
        ``assigned_at`` (:data:`MEMBERS_SCHEMA`)."""

    @abc.abstractmethod
    def arms(self, name: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        """For the keys that are members: their arm, run and time of assignment."""

    @abc.abstractmethod
    def forget(self, keys: list[str]) -> int:
        """Remove these keys from every experiment (``conn forget``: a member's key is
        personal data); returns how many memberships were removed. The bytes of removed
        keys must not stay in the store's files."""

    @abc.abstractmethod
    def experiments(self) -> list[dict[str, Any]]:
        """Every experiment, running and archived: its design, ``ended_at`` (None while
        it runs) and its members per arm (``treatment``, ``holdout``)."""


_TABLES = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT NOT NULL, sync TEXT NOT NULL, percent TEXT NOT NULL, salt TEXT NOT NULL,
    started_at DOUBLE NOT NULL, run_id TEXT NOT NULL, ended_at DOUBLE);
CREATE TABLE IF NOT EXISTS experiment_members (
    experiment TEXT NOT NULL, key TEXT NOT NULL, arm TEXT NOT NULL, run_id TEXT NOT NULL,
    assigned_at DOUBLE NOT NULL);
"""


class DuckDBExperiments(ExperimentStore):
    """:class:`ExperimentStore` over DuckDB connections that ``connect()`` opens (a
    context manager: the caller decides where the tables live and who may write)."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Any]],
                 compact: Callable[[Any], None] | None = None) -> None:
        self._connect = connect
        #: Called with the open connection after keys were forgotten: rewrites a file
        #: so that no free block keeps their bytes (the file backend).
        self._compact = compact

    def _db(self) -> AbstractContextManager[Any]:
        return self._connect()

    def design(self, name: str) -> dict[str, Any] | None:
        with self._db() as con:
            row = con.execute("SELECT sync, percent, salt, started_at, run_id FROM "
                              "experiments WHERE name = ? AND ended_at IS NULL",
                              [name]).fetchone()
        if row is None:
            return None
        return dict(zip(("sync", "percent", "salt", "started_at", "run_id"), row,
                        strict=True))

    def begin(self, name: str, sync: str, design: dict[str, str], run_id: str) -> None:
        with self._db() as con:
            con.execute("INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        [name, sync, design["percent"], design["salt"], time.time(),
                         run_id])

    def archive(self, name: str) -> str:
        with self._db() as con:
            n = con.execute("SELECT count(*) FROM experiments WHERE name LIKE ? ESCAPE '\\'",
                            [_like(name) + "#%"]).fetchone()[0]
            new = f"{name}#{n + 1}"
            con.execute("BEGIN")
            con.execute("UPDATE experiments SET name = ?, ended_at = ? "
                        "WHERE name = ? AND ended_at IS NULL", [new, time.time(), name])
            con.execute("UPDATE experiment_members SET experiment = ? WHERE experiment = ?",
                        [new, name])
            con.execute("COMMIT")
        return new

    def record(self, name: str, run_id: str, keys: pa.Array, held_out: pa.Array) -> int:
        if not len(keys):
            return 0
        batch = distinct_members(keys, held_out)
        with self._db() as con:
            con.register("conn_new_members", batch)
            try:
                return int(con.execute(
                    "INSERT INTO experiment_members "
                    "SELECT ?, n.key, n.arm, ?, ? FROM conn_new_members n "
                    "ANTI JOIN (SELECT key FROM experiment_members WHERE experiment = ?) m "
                    "ON n.key = m.key",
                    [name, run_id, time.time(), name]).fetchone()[0])
            finally:
                con.unregister("conn_new_members")

    def members(self, name: str) -> pa.Table:
        with self._db() as con:
            t = con.sql("SELECT key, arm, run_id, assigned_at FROM experiment_members "
                        "WHERE experiment = $name", params={"name": name}).to_arrow_table()
        return t.cast(MEMBERS_SCHEMA)

    def arms(self, name: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        with self._db() as con:
            con.register("conn_keys", pa.table({"key": pa.array(keys, pa.string())}))
            try:
                rows = con.execute(
                    "SELECT m.key, m.arm, m.run_id, m.assigned_at FROM experiment_members m "
                    "SEMI JOIN conn_keys k ON m.key = k.key WHERE m.experiment = ?",
                    [name]).fetchall()
            finally:
                con.unregister("conn_keys")
        return {k: {"arm": arm, "run_id": run, "assigned_at": at}
                for k, arm, run, at in rows}

    def forget(self, keys: list[str]) -> int:
        if not keys:
            return 0
        with self._db() as con:
            con.register("conn_forget", pa.table({"key": pa.array(keys, pa.string())}))
            try:
                n = int(con.execute("DELETE FROM experiment_members m USING conn_forget f "
                                    "WHERE m.key = f.key").fetchone()[0])
            finally:
                con.unregister("conn_forget")
            if n and self._compact is not None:
                self._compact(con)
        return n

    def experiments(self) -> list[dict[str, Any]]:
        with self._db() as con:
            cur = con.execute(
                "SELECT e.name, e.sync, e.percent, e.salt, e.started_at, e.run_id, "
                "e.ended_at, count(*) FILTER (WHERE m.arm = 'treatment') AS treatment, "
                "count(*) FILTER (WHERE m.arm = 'holdout') AS holdout "
                "FROM experiments e LEFT JOIN experiment_members m ON m.experiment = e.name "
                "GROUP BY ALL ORDER BY e.started_at, e.name")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def distinct_members(keys: pa.Array, held_out: pa.Array) -> pa.Table:
    """``key`` and ``arm`` of the non-null keys, each key once. A key read twice (the
    planner rejects the duplicate row) has one arm, a function of the key; checking for
    duplicates first is cheaper than always grouping (1M keys: 2.7 s against 4.6 s for
    the insert with a GROUP BY, measured under load)."""
    table = pa.table({"key": keys, "arm": pc.if_else(held_out, "holdout", "treatment")})
    if keys.null_count:
        table = table.filter(pc.is_valid(keys))
    if pc.count_distinct(table.column("key")).as_py() < table.num_rows:
        grouped = table.group_by("key", use_threads=False).aggregate([("arm", "min")])
        table = pa.table({"key": grouped.column("key"), "arm": grouped.column("arm_min")})
    return table


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prepare(con: Any) -> None:
    """Create the experiment tables in ``con``'s database if they are missing."""
    con.execute(_TABLES)


def memory_connection() -> Callable[[], AbstractContextManager[Any]]:
    """Connections to one in-memory DuckDB database, serialised by a lock (the memory
    backend: tests and dry runs)."""
    import threading
    from contextlib import contextmanager

    import duckdb

    con = duckdb.connect()
    prepare(con)
    lock = threading.Lock()

    @contextmanager
    def connect() -> Iterator[Any]:
        with lock:
            yield con

    return connect

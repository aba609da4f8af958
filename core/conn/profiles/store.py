"""Where built profiles live: ``profiles.duckdb`` in the project's state folder (.conn/).

Per profile set NAME, tables ``NAME.records`` (rkey, profile, island), ``NAME.entries``
(rkey, ident, and ``h``: DuckDB's hash of ident), ``NAME.golden`` (the stream
``profiles.NAME``), ``NAME.digests`` (each record's digest of its rows:
:mod:`conn.profiles.refresh`), ``NAME.junk`` (the last build's junk values),
``NAME.matches`` (the pairs the last build's matchers kept, with their scores) and
``NAME.changes`` (every merge and split, with the build and time: the history is
appended, never rewritten); ``builds`` lists the builds.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from conn.profiles.engine import CHANGES, ENTRIES, RECORDS, EntriesIn, Previous

FILE = "profiles.duckdb"
#: What DuckDB may hold in memory while a build is saved.
SAVE_MEMORY = "256MB"


#: Columns a stored table has besides those a build hands over, and their SQL: each
#: entry's identifier hashed, which :class:`EntriesIn` asks by (a scan of 11M hashes
#: instead of 11M strings).
_COMPUTED = {"entries": ("h", "hash(ident)")}


def _computed(table: str) -> str:
    """The select list's tail adding ``table``'s computed column, if it has one."""
    column = _COMPUTED.get(table)
    return f", {column[1]} AS {column[0]}" if column else ""


def path(state_dir: Path) -> Path:
    """The profiles database of a project (whose state folder is ``state_dir``)."""
    return state_dir / FILE


def _t(name: str, table: str) -> str:
    return '"' + f"{name}.{table}".replace('"', '""') + '"'


@dataclass
class Update:
    """A stored table changed in place by an incremental build: the rows whose ``key``
    column is in ``gone`` deleted, then ``rows`` inserted (by column name)."""

    key: str
    gone: pa.Array
    rows: pa.Table


class ProfileStore:
    """Read and write built profile sets. ``read_only`` opens without a write lock (a
    sync reading ``profiles.NAME`` while nothing builds)."""

    def __init__(self, file: Path, read_only: bool = False) -> None:
        import duckdb

        if not read_only:
            file.parent.mkdir(parents=True, exist_ok=True)
        self.file = file
        self.con = duckdb.connect(str(file), read_only=read_only)
        if not read_only:
            self.con.execute("CREATE TABLE IF NOT EXISTS builds (name VARCHAR, build_id "
                             "VARCHAR, built_at TIMESTAMPTZ, full_build BOOLEAN, stats JSON)")

    def close(self) -> None:
        self.con.close()

    def has(self, name: str, table: str = "records") -> bool:
        return bool(self.query(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?",
            [f"{name}.{table}"])[0]["n"])

    def previous(self, name: str, entries: bool = True) -> Previous:
        """What the last build of ``name`` stored (empty before the first), its entries
        answered by the store's DuckDB (an incremental build asks for a few thousand
        records' and identifiers' entries: loading all of them, 11M at 2M people, held a
        few hundred MB through its stitching); without them when ``entries`` is False
        (a full build reads none: every record is stitched again, only the old ids are
        kept)."""
        if not self.has(name):
            return Previous(RECORDS.empty_table(), ENTRIES.empty_table())
        records = self.con.sql(f"SELECT * FROM {_t(name, 'records')}").to_arrow_table()
        junk = self.con.sql(f"SELECT ident, records::BIGINT AS records "
                            f"FROM {_t(name, 'junk')}").to_arrow_table()
        return Previous(records.cast(RECORDS), EntriesIn(self.con, _t(name, "entries"))
                        if entries else ENTRIES.empty_table(), junk)

    def save(self, name: str, build_id: str, at: Any, full: bool, *,
             tables: dict[str, pa.Table | Update], changes: pa.Table,
             stats: dict[str, Any]) -> int:
        """Store a build of the set ``name`` in one transaction: each of ``tables``
        (``records``, ``entries``, ``golden``, ``digests``, ``junk``, ``matches``)
        replaced whole by a table, or changed in place by an :class:`Update`; the
        build's merges and splits appended to the set's changes; the build listed.
        Returns how many profiles the set holds (also ``profiles`` in the stored
        stats)."""
        con = self.con
        # Row order in the stored tables means nothing (readers order what they show).
        # With insertion order kept, DuckDB's parallel writers left row groups that the
        # checkpoint rewrote: 1M profiles saved in half the time and half the file.
        con.execute("SET preserve_insertion_order = false")
        # DuckDB's write buffers are capped (it flushes sooner): at 2M people the save
        # took as long with 256 MB as without a cap, and added 0.3 GB to the build's
        # peak instead of 0.86 GB, on top of the build's tables it writes.
        con.execute(f"SET memory_limit = '{SAVE_MEMORY}'")
        con.execute("BEGIN")
        try:
            for table, data in tables.items():
                if isinstance(data, Update):
                    self._update(name, table, data)
                    continue
                con.register("_data", data)
                con.execute(f"CREATE OR REPLACE TABLE {_t(name, table)} AS "
                            f"SELECT *{_computed(table)} FROM _data")
                con.unregister("_data")
            row = con.execute(f"SELECT count(*) FROM {_t(name, 'golden')}").fetchone()
            profiles = int(row[0]) if row else 0
            con.execute(f"CREATE TABLE IF NOT EXISTS {_t(name, 'changes')} (build_id "
                        f"VARCHAR, changed_at TIMESTAMPTZ, kind VARCHAR, old_id VARCHAR, "
                        f"new_id VARCHAR, cause VARCHAR)")
            con.register("_data", changes.cast(CHANGES))
            con.execute(f"INSERT INTO {_t(name, 'changes')} SELECT ?, ?, kind, old_id, "
                        f"new_id, cause FROM _data", [build_id, at])
            con.unregister("_data")
            con.execute("INSERT INTO builds VALUES (?, ?, ?, ?, ?)",
                        [name, build_id, at, full, json.dumps({**stats,
                                                               "profiles": profiles})])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.execute("RESET preserve_insertion_order")
            con.execute("RESET memory_limit")
        return profiles

    def _update(self, name: str, table: str, change: Update) -> None:
        key = '"' + change.key.replace('"', '""') + '"'
        stored = _t(name, table)
        self.con.register("_gone", pa.table({"k": change.gone}))
        self.con.execute(f"DELETE FROM {stored} WHERE {key} IN (SELECT k FROM _gone)")
        self.con.unregister("_gone")
        computed = _computed(table)
        if computed and not self._has_column(stored, _COMPUTED[table][0]):
            computed = ""  # a store from before the column: its reader asks without it
        self.con.register("_data", change.rows)
        self.con.execute(f"INSERT INTO {stored} BY NAME SELECT *{computed} FROM _data")
        self.con.unregister("_data")

    def _has_column(self, table: str, column: str) -> bool:
        return column in self.con.sql(f"SELECT * FROM {table} LIMIT 0").columns

    def digests(self, name: str) -> pa.Table | None:
        """Each record's digest of its rows, as the last build stored them (None: it
        stored none)."""
        from conn.profiles.refresh import DIGESTS

        if not self.has(name, "digests"):
            return None
        return self.con.sql(f"SELECT rkey, digest FROM {_t(name, 'digests')}"
                            ).to_arrow_table().cast(DIGESTS)

    def golden(self, name: str) -> pa.Table:
        return self.con.sql(f"SELECT * FROM {_t(name, 'golden')} ORDER BY profile_id"
                            ).to_arrow_table()

    def golden_schema(self, name: str) -> pa.Schema:
        return self.con.sql(f"SELECT * FROM {_t(name, 'golden')} LIMIT 0"
                            ).to_arrow_table().schema

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        rel = self.con.execute(sql, params or [])
        cols = [d[0] for d in rel.description or ()]
        return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]

    def merged_away(self, name: str) -> pa.Array:
        """Every profile id a merge ever absorbed into another (old ids of the set's
        recorded merges)."""
        if not self.has(name, "changes"):
            return pa.array([], pa.string())
        rel = self.con.sql(f"SELECT DISTINCT old_id FROM {_t(name, 'changes')} "
                           "WHERE kind = 'merge'")
        return rel.to_arrow_table().column(0).combine_chunks()

    def survivors(self, name: str, max_steps: int = 64) -> pa.Table:
        """Each absorbed profile id (``old_id``) with the profile it lives on in now
        (``new_id``), following chains of merges (a into b, later b into c: a's survivor
        is c). Only ids absorbed for good and survivors in the set are listed: an old id
        that is a profile again, an id whose last merge split it over several profiles,
        and a chain that leads nowhere (a cycle, or an id that left the set) are left
        out, so their records are deleted rather than merged. Vectorised: DuckDB joins
        the merges with the set, then each step of the longest chain is one numpy
        gather over row positions."""
        import numpy as np
        import pyarrow.compute as pc

        empty = pa.table({"old_id": pa.array([], pa.string()),
                          "new_id": pa.array([], pa.string())})
        if not self.has(name, "changes") or not self.has(name, "golden"):
            return empty
        # Each id's last merge (the build that absorbed it; split over several profiles
        # in that build: ambiguous, left out), and whether either end is a profile now.
        step = self.con.sql(f"""WITH last AS (
              SELECT old_id, any_value(new_id) AS new_id FROM (
                SELECT old_id, new_id FROM {_t(name, 'changes')} WHERE kind = 'merge'
                QUALIFY changed_at = max(changed_at) OVER (PARTITION BY old_id))
              GROUP BY old_id HAVING count(DISTINCT new_id) = 1)
            SELECT l.old_id, l.new_id, o.profile_id IS NOT NULL AS old_live,
                   n.profile_id IS NOT NULL AS new_live
            FROM last l LEFT JOIN {_t(name, 'golden')} o ON o.profile_id = l.old_id
            LEFT JOIN {_t(name, 'golden')} n ON n.profile_id = l.new_id""").to_arrow_table()
        if not step.num_rows:
            return empty
        old = step.column("old_id").combine_chunks()
        new = step.column("new_id").combine_chunks()
        live = step.column("new_live").to_numpy()
        # The row of each target's own last merge (-1: it has none, the chain ends).
        onward = pc.index_in(new, value_set=old).fill_null(-1).to_numpy()
        at = np.arange(len(old))
        for _ in range(max_steps):
            moving = ~live[at]
            moving[moving] = onward[at[moving]] >= 0
            if not moving.any():
                break
            at[moving] = onward[at[moving]]
        done = live[at] & ~step.column("old_live").to_numpy()
        rows = pa.array(at[done])
        return pa.table({"old_id": old.filter(pa.array(done)), "new_id": new.take(rows)})

    def last_build(self, name: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM builds WHERE name = ? ORDER BY built_at DESC LIMIT 1",
                          [name])
        return rows[0] if rows else None


@contextlib.contextmanager
def opened(state_dir: Path, read_only: bool = False) -> Iterator[ProfileStore]:
    """The project's profile store, closed on leaving."""
    store = ProfileStore(path(state_dir), read_only=read_only)
    try:
        yield store
    finally:
        store.close()


def table_name(name: str, table: str) -> str:
    """The quoted name of a set's table (for queries by other modules)."""
    return _t(name, table)

"""Which golden records a build computes again, and which stored ones it keeps.

A full build computes every profile's golden record. An incremental build computes only
the profiles whose records or rows changed and replaces just those rows of the stored
stream ``profiles.NAME``:

* the profiles of the records it re-stitched (an island is re-stitched whole, so these
  profiles hold no other record);
* the profiles of records whose rows changed since the last build: a field or the
  ``updated_at`` column edited, a row added or removed under the same identifiers. Each
  record's rows have a digest, stored with the build, to find them;
* gone: the ids the re-stitched and vanished records had before (merged away, split, or
  computed again under the same id).

Any other profile holds the same records with the same rows as before, so its stored
golden record is the one a full build would compute again
(tests/profiles/test_golden_incremental.py checks that against full builds). The golden
rules, the edges and their rows' columns are part of the stored build: when they change,
every golden record is computed again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import duckdb

    from conn.config.profiles import ProfileSet
    from conn.profiles.engine import Outcome

#: A record's key and the digest of its rows.
DIGESTS = pa.schema([("rkey", pa.uint64()), ("digest", pa.uint64())])


def fingerprint(ps: ProfileSet, rows: dict[str, pa.Table]) -> str:
    """A digest of what golden records are computed from besides the rows' values: the
    field rules, the identifier types, the edges in order and their rows' columns."""
    doc = {"fields": [[n, r.column, r.rule, list(r.sources)] for n, r in ps.fields.items()],
           "types": list(ps.types), "edges": list(ps.edges),
           "columns": {e: [f"{f.name}:{f.type}" for f in t.schema] for e, t in rows.items()}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def digests(rows: dict[str, pa.Table], records: pa.Table) -> pa.Table:
    """Each record's digest of its rows: a hash of their count and of the sum of their
    ``_digest`` values, so that editing, adding or removing a row changes it, whatever
    the rows' order. Only the build's ``records`` have one: a row without identifiers
    is no record (it joins no profile)."""
    import duckdb

    if not rows:
        return DIGESTS.empty_table()
    con = duckdb.connect()
    try:
        for i, table in enumerate(rows.values()):
            con.register(f"r{i}", table.select(["rkey", "_digest"]))
        con.register("recs", records.select(["rkey"]))
        union = " UNION ALL ".join(f"SELECT rkey, _digest FROM r{i}" for i in range(len(rows)))
        return con.sql(f"SELECT rkey, hash(count(*), sum(_digest >> 1)) AS digest "
                       f"FROM ({union}) SEMI JOIN recs USING (rkey) GROUP BY rkey"
                       ).to_arrow_table().cast(DIGESTS)
    finally:
        con.close()


@dataclass
class Refresh:
    """What a build's golden step computes: ``records`` (rkey, profile) of the profiles
    computed, ``rows`` and ``entries`` of those records only, ``gone``: the profile ids
    whose stored golden rows are replaced (None: the whole stream is), and ``edited``:
    the records' digests that differ from the stored ones (None with ``gone``)."""

    records: pa.Table
    rows: dict[str, pa.Table]
    entries: pa.Table
    gone: pa.Array | None
    edited: pa.Table | None = None


def everything(out: Outcome, rows: dict[str, pa.Table], entries: pa.Table) -> Refresh:
    """Every profile computed again (a first or full build, or changed rules)."""
    return Refresh(out.records.select(["rkey", "profile"]), rows, entries, None)


def changed(out: Outcome, rows: dict[str, pa.Table], entries: pa.Table,
            now: pa.Table, before: pa.Table) -> Refresh:
    """The profiles an incremental build changed (module docstring): ``now`` and
    ``before`` are the records' digests of this build and of the last one."""
    import duckdb

    assert out.delta is not None
    n = out.records.num_rows
    con = duckdb.connect()
    try:
        con.register("recs", out.records.select(["rkey", "profile"]))
        con.register("fresh", out.records.slice(n - out.restitched).select(["profile"]))
        con.register("now", now)
        con.register("before", before)
        con.register("replaced", pa.table({"profile": out.delta.replaced}))
        edited = con.sql("SELECT now.rkey, now.digest FROM now LEFT JOIN before b "
                         "USING (rkey) WHERE b.digest IS DISTINCT FROM now.digest"
                         ).to_arrow_table().cast(DIGESTS)
        con.register("edited", edited)
        records = con.sql("""
            WITH touched AS (SELECT profile FROM recs SEMI JOIN edited USING (rkey)
                             UNION SELECT profile FROM fresh)
            SELECT rkey, profile FROM recs SEMI JOIN touched USING (profile)
            """).to_arrow_table()
        con.register("sub", records)
        gone = con.sql("SELECT profile FROM sub UNION SELECT profile FROM replaced"
                       ).to_arrow_table().column(0).combine_chunks()
        return Refresh(records, {edge: _held(con, t) for edge, t in rows.items()},
                       _held(con, entries), gone, edited)
    finally:
        con.close()


def _held(con: duckdb.DuckDBPyConnection, table: pa.Table) -> pa.Table:
    """The rows of ``table`` whose record is in ``sub``."""
    con.register("t", table)
    try:
        return con.sql("SELECT * FROM t SEMI JOIN sub USING (rkey)").to_arrow_table(
            ).cast(table.schema)
    finally:
        con.unregister("t")

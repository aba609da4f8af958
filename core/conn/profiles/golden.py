"""Golden records: one row per profile, each field chosen by its survivorship rule.

=================  =============================================================
rule               the value kept (nulls never win)
=================  =============================================================
most_recent        from the row with the latest ``updated_at`` (ties: the
                   greater record key)
most_frequent      the value most rows hold (ties: the greater value)
source_priority    from the first edge in ``sources`` that has one
first_non_null     from the earliest row (``updated_at``, then edge order, then
                   record key)
max / min          the greatest / least value
consent            a yes/no value: from the row with the latest ``updated_at``; at
                   the same instant a denial wins
=================  =============================================================

Each row also carries the profile's identifiers: per type ``TYPE`` (the value most of
its records hold; ties: the least) and ``TYPE_all`` (every value, sorted), plus
``records`` and ``edges`` (where the profile was seen).

Two DuckDB queries per build, one for the identifiers and one for the fields, both
grouping by a profile's number (its position in the build's distinct ids) rather than
by its id: joining and grouping millions of rows on 18-character strings was most of a
build's time (docs/performance.md, "Identity stitching").
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.profiles.ids import ranked

SEP = "\x1f"  # between an identifier's type and value
#: What the golden records' DuckDB queries may hold in memory before spilling (at 2M
#: people 512 MB took the same time as 1 GB, for a peak 0.36 GB lower).
MEMORY_LIMIT = "512MB"

if TYPE_CHECKING:
    import duckdb

    from conn.config.profiles import ProfileSet


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def golden(ps: ProfileSet, rows: dict[str, pa.Table], records: pa.Table,
           entries: pa.Table) -> pa.Table:
    """The stream ``profiles.NAME`` (primary key ``profile_id``), in profile id order.

    ``records``: (rkey, profile) of every record; ``entries``: distinct (rkey, ident)
    pairs, as :mod:`conn.profiles.edges` reads them (so a count of entries is a count
    of records); ``rows``: each edge's rows (rkey, ``_updated_at``, field columns),
    emptied once read (the identifiers, computed next, need them no more: at 2M people
    they are a few hundred MB of the build's peak)."""
    import duckdb

    # A profile's number is its id's position in id order: the columns built by number
    # come out sorted by id.
    profile_ids, number = ranked(records.column("profile"),
                                 np.arange(records.num_rows, dtype=np.int64))
    profiles = len(profile_ids)
    # DuckDB's part of the build's peak is capped (its hash tables spill to a scratch
    # folder beyond it): 2M people, peak 3.6 -> 2.7 GB for a fifth more time at 1 GB.
    scratch = tempfile.TemporaryDirectory(prefix="conn-golden-")
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT,
                                 "temp_directory": scratch.name})
    try:
        con.register("recs", pa.table({"rkey": records.column("rkey"),
                                       "p": number.astype(np.int32)}))
        sql, params = _fields(con, ps, rows)
        fields = con.sql(sql, params=params).to_arrow_table()
        for i in range(len(rows)):
            con.unregister(f"e{i}")
        rows.clear()
        pa.default_memory_pool().release_unused()
        con.register("entries", entries)
        idents = _identifiers(con, list(ps.types), profiles)
    finally:
        con.close()
        scratch.cleanup()
    at = np.full(profiles, -1, np.int64)  # every profile has records: none stays -1
    at[fields.column("p").to_numpy()] = np.arange(fields.num_rows)
    fields = fields.drop_columns(["p"]).take(pa.array(at, mask=at < 0))
    return pa.table({"profile_id": profile_ids, **idents,
                     "records": pa.array(np.bincount(number, minlength=profiles)),
                     "edges": _edge_lists(fields.column("_edges"), list(ps.edges)),
                     **{name: fields.column(name) for name in fields.column_names
                        if name != "_edges"}})


def _edge_lists(masks: pa.ChunkedArray, edges: list[str]) -> pa.Array:
    """Each profile's edges, sorted by name, from its bit mask (null: no rows). A list is
    made per distinct mask (a few), not per profile: a distinct-list aggregate in the
    query took twice the rest of it. The masks are 64-bit integers: DuckDB's shift
    widens to a 128-bit decimal, which numpy reads as Python objects (3 s at 2M)."""
    m = masks.combine_chunks()
    bits = m.fill_null(0).to_numpy(zero_copy_only=False)
    distinct, which = np.unique(bits, return_inverse=True)
    lists = pa.array([sorted(e for i, e in enumerate(edges) if int(d) >> i & 1)
                      for d in distinct], pa.list_(pa.string()))
    return lists.take(pa.array(which.ravel(), mask=(bits == 0)))


def _identifiers(con: duckdb.DuckDBPyConnection, types: list[str],
                 profiles: int) -> dict[str, pa.Array]:
    """Per type ``TYPE``, two columns of ``profiles`` rows (row ``p``: profile number
    ``p``): ``TYPE``, the value most of the profile's records hold (ties: the least),
    and ``TYPE_all``, every value, sorted.

    DuckDB counts each profile's records per identifier and sorts them by profile and
    identifier (``type \\x1f value``: by type, then value); the columns are cut from
    that order with numpy (grouped list aggregates per type took twice as long).
    Type names may be any text: a value is cut after its type's prefix, counted in
    characters."""
    t = con.sql("SELECT r.p, e.ident, count(*) AS n FROM entries e JOIN recs r "
                "USING (rkey) GROUP BY ALL ORDER BY p, ident").to_arrow_table()
    p = t.column("p").to_numpy()
    n = t.column("n").to_numpy()
    ident = t.column("ident").combine_chunks().cast(pa.string())
    del t
    cols: dict[str, pa.Array] = {}
    for name in types:
        prefix = name + SEP
        at = np.flatnonzero(pc.starts_with(ident, prefix).to_numpy(zero_copy_only=False))
        values = pc.utf8_slice_codeunits(ident.take(pa.array(at)), len(prefix))
        held = np.bincount(p[at], minlength=profiles)
        offsets = np.zeros(profiles + 1, np.int32)
        np.cumsum(held, out=offsets[1:])
        absent = held == 0
        pick = np.zeros(profiles, np.int64)
        if len(at):
            # Values are in order within a profile: the first position holding the
            # profile's largest count is the least of the most held values.
            counts = n[at]
            starts = offsets[:-1][~absent]
            most = np.maximum.reduceat(counts, starts)
            group = np.repeat(np.arange(len(starts)), held[~absent])
            first = np.where(counts == most[group], np.arange(len(at)), len(at))
            pick[~absent] = np.minimum.reduceat(first, starts)
            cols[name] = values.take(pa.array(pick, mask=absent))
        else:
            cols[name] = pa.nulls(profiles, pa.string())
        cols[name + "_all"] = pa.ListArray.from_arrays(pa.array(offsets), values,
                                                       mask=pa.array(absent))
    return cols


def _fields(con: duckdb.DuckDBPyConnection, ps: ProfileSet,
            rows: dict[str, pa.Table]) -> tuple[str, list[str]]:
    """The query of each profile number's ``p`` edges (``_edges``: a bit per edge of
    ``ps.edges``, in their order) and declared fields (a profile's rows only)."""
    order = list(ps.edges)
    unions = []
    for i, (edge, table) in enumerate(rows.items()):
        con.register(f"e{i}", table)
        unions.append(f"SELECT {order.index(edge)} AS _edge, ? AS _edge_name, * FROM e{i}")
    params: list[str] = list(rows)
    body = " UNION ALL BY NAME ".join(unions) if unions else \
        "SELECT NULL::INT AS _edge, NULL::VARCHAR AS _edge_name, NULL::UBIGINT AS rkey, " \
        "NULL::TIMESTAMPTZ AS _updated_at LIMIT 0"
    present = set(con.sql(body, params=params).columns) if unions else set()
    selects, joins = [], []
    for k, (name, rule) in enumerate(ps.fields.items()):
        col = _q(rule.column)
        out = _q(name)
        if rule.column not in present:
            selects.append(f"NULL AS {out}")
            continue
        nn = f"FILTER (WHERE {col} IS NOT NULL)"
        if rule.rule == "most_recent":
            selects.append(f"arg_max({col}, (_updated_at, rkey)) {nn} AS {out}")
        elif rule.rule == "consent":
            # The latest wins; at the same instant a denial (NOT col is true) wins.
            selects.append(f"arg_max({col}::BOOLEAN, (_updated_at, NOT {col}::BOOLEAN)) "
                           f"{nn} AS {out}")
        elif rule.rule == "first_non_null":
            selects.append(f"arg_min({col}, (_updated_at, _edge, rkey)) {nn} AS {out}")
        elif rule.rule in ("max", "min"):
            selects.append(f"{rule.rule}({col}) AS {out}")
        elif rule.rule == "source_priority":
            prio = " ".join(f"WHEN {_lit(s)} THEN {j}" for j, s in enumerate(rule.sources))
            selects.append(f"arg_min({col}, (CASE _edge_name {prio} ELSE NULL END, rkey)) "
                           f"FILTER (WHERE {col} IS NOT NULL AND _edge_name IN "
                           f"({', '.join(_lit(s) for s in rule.sources)})) AS {out}")
        else:  # most_frequent
            joins.append(f"LEFT JOIN (SELECT p, arg_max(v, (n, v)) AS {out} FROM "
                         f"(SELECT p, {col} AS v, count(*) AS n FROM j WHERE {col} "
                         f"IS NOT NULL GROUP BY ALL) GROUP BY p) f{k} USING (p)")
            selects.append(f"any_value(f{k}.{out}) AS {out}")
    sql = f"""
        WITH rows AS ({body}),
        j AS (SELECT r.p, rows.* FROM rows JOIN recs r USING (rkey)),
        f AS (SELECT p, bit_or(1::UBIGINT << _edge)::UBIGINT AS _edges
                     {''.join(', ' + s for s in selects)}
              FROM j {' '.join(joins)} GROUP BY p)
        SELECT * FROM f"""
    return sql, params

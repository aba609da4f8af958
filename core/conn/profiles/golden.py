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
``records`` and ``edges`` (where the profile was seen). One DuckDB query per build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from conn.config.profiles import ProfileSet


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def golden(ps: ProfileSet, rows: dict[str, pa.Table], records: pa.Table,
           entries: pa.Table) -> pa.Table:
    """The stream ``profiles.NAME``: primary key ``profile_id``."""
    import duckdb

    con = duckdb.connect()
    con.register("recs", records.select(["rkey", "profile"]))
    con.register("entries", entries)
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
            joins.append(f"LEFT JOIN (SELECT profile, arg_max(v, (n, v)) AS {out} FROM "
                         f"(SELECT profile, {col} AS v, count(*) AS n FROM j WHERE {col} "
                         f"IS NOT NULL GROUP BY ALL) GROUP BY profile) f{k} USING (profile)")
            selects.append(f"any_value(f{k}.{out}) AS {out}")
    types = list(ps.types)
    ident_cols = []
    for t in types:
        ident_cols.append(f"arg_max(value, (n, -rank)) FILTER (WHERE type = {_lit(t)}) "
                          f"AS {_q(t)}")
        ident_cols.append(f"list_sort(list(value) FILTER (WHERE type = {_lit(t)})) "
                          f"AS {_q(t + '_all')}")
    sql = f"""
        WITH rows AS ({body}),
        j AS (SELECT r.profile, rows.* FROM rows JOIN recs r USING (rkey)),
        ids AS (
            SELECT profile, type, value, n,
                   dense_rank() OVER (PARTITION BY profile, type ORDER BY value) AS rank
            FROM (SELECT r.profile, split_part(e.ident, chr(31), 1) AS type,
                         substr(e.ident, strpos(e.ident, chr(31)) + 1) AS value,
                         count(DISTINCT e.rkey) AS n
                  FROM entries e JOIN recs r USING (rkey) GROUP BY ALL)),
        idt AS (SELECT profile, {', '.join(ident_cols) or 'NULL AS _none'} FROM ids
                GROUP BY profile),
        fields AS (SELECT profile, count(DISTINCT rkey) AS records,
                          list_sort(list(DISTINCT _edge_name)) AS edges
                          {''.join(', ' + s for s in selects)}
                   FROM j {' '.join(joins)} GROUP BY profile)
        SELECT idt.profile AS profile_id, idt.* EXCLUDE (profile),
               coalesce(fields.records, 0) AS records, fields.* EXCLUDE (profile, records)
        FROM idt LEFT JOIN fields USING (profile) ORDER BY profile_id
    """
    return con.sql(sql, params=params).to_arrow_table()


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"

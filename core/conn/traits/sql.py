"""Traits as one DuckDB SQL query per source (docs/traits.md, "How traits are computed").

Each stream a source's traits read becomes one ``GROUP BY key`` over that stream, every
trait of it one aggregate with a ``FILTER`` (its ``where`` and its window): the stream
is scanned once whatever the number of traits. The streams' results are joined per key
(``FULL OUTER JOIN``), then ratios and SQL expressions over traits are added, each in
its own step, in dependency order, so an expression may read a trait defined by
another expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from conn.config.traits import ZERO_WHEN_NONE, Trait

#: The key column of every trait table.
KEY = "k"


def q(name: str) -> str:
    """A quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def epoch_of(column: str, type_: pa.DataType | None) -> str:
    """Seconds since 1970 (UTC) of a time column: a timestamp (naive ones are UTC), a
    date or ISO 8601 text."""
    if type_ is not None and pa.types.is_timestamp(type_):
        return f"epoch({q(column)})"
    if type_ is not None and pa.types.is_date(type_):
        return f"epoch(CAST({q(column)} AS TIMESTAMP))"
    if type_ is not None and (pa.types.is_integer(type_) or pa.types.is_floating(type_)):
        return f"CAST({q(column)} AS DOUBLE)"  # already seconds since 1970
    return f"epoch(CAST({q(column)} AS TIMESTAMPTZ))"


def aggregate_sql(t: Trait, now: float, time_type: pa.DataType | None) -> str:
    """The aggregate expression of one trait (``now``: seconds since 1970, UTC)."""
    ep = epoch_of(t.time, time_type) if t.time else ""
    conds = []
    if t.where:
        conds.append(f"({t.where})")
    if t.window is not None:
        conds.append(f"{ep} >= {now - t.window!r}")
    col = q(t.column) if t.column else ""
    agg = t.aggregate
    if agg == "count":
        expr = "count(*)"
    elif agg == "distinct":
        expr = f"count(DISTINCT {col})"
    elif agg == "first":
        expr = f"arg_min({col}, {ep})"
    elif agg == "last":
        expr = f"arg_max({col}, {ep})"
    elif agg == "recency":
        expr = f"max({ep})"
    else:
        expr = f"{agg}({col})"
    if conds:
        expr += f" FILTER (WHERE {' AND '.join(conds)})"
    if agg == "recency":
        # Whole days since the last matching event.
        expr = f"CAST(floor(({now!r} - {expr}) / 86400) AS BIGINT)"
    return expr


@dataclass(frozen=True)
class StreamPart:
    """The traits one stream of a source gives: its SQL reference, key and time type."""

    ref: str
    key: str
    traits: tuple[Trait, ...]
    time_types: dict[str, pa.DataType | None]


def stream_cte(part: StreamPart, now: float, keys: Sequence[str] | None) -> str:
    """``SELECT key, aggregates FROM ref GROUP BY key``; ``keys``: only these keys."""
    aggs = ", ".join(f"{aggregate_sql(t, now, part.time_types.get(t.time or ''))} "
                     f"AS {q(t.name)}" for t in part.traits)
    k = f"CAST({q(part.key)} AS VARCHAR)"
    where = f"{q(part.key)} IS NOT NULL"
    if keys is not None:
        where += f" AND {k} IN ({', '.join(literal(x) for x in keys) or 'NULL'})"
    return f"SELECT {k} AS {KEY}, {aggs} FROM {part.ref} WHERE {where} GROUP BY 1"


def joined(parts: Sequence[tuple[str, Sequence[Trait]]], derived: Sequence[Trait],
           out: Sequence[str]) -> list[tuple[str, str]]:
    """CTEs (name, body) joining per-key tables ``parts`` (name, their traits) and adding
    ``derived`` traits in order; the last CTE holds ``KEY`` and the ``out`` traits."""
    ctes: list[tuple[str, str]] = []
    first = parts[0][0]
    keys = [f"{p}.{KEY}" for p, _ in parts]
    cols = []
    for name, traits in parts:
        for t in traits:
            c = f"{name}.{q(t.name)}"
            cols.append(f"coalesce({c}, 0) AS {q(t.name)}" if t.aggregate in ZERO_WHEN_NONE
                        else f"{c} AS {q(t.name)}")
    frm = first
    for i, (name, _) in enumerate(parts[1:], start=1):
        on = keys[0] if i == 1 else f"coalesce({', '.join(keys[:i])})"
        frm += f" FULL OUTER JOIN {name} ON {name}.{KEY} = {on}"
    key = keys[0] if len(keys) == 1 else f"coalesce({', '.join(keys)})"
    ctes.append(("base", f"SELECT {key} AS {KEY}, {', '.join(cols)} FROM {frm}"))
    prev = _derive(ctes, "base", derived)
    ctes.append(("traits", f"SELECT {KEY}, {', '.join(q(n) for n in out)} FROM {prev}"))
    return ctes


def _derive(ctes: list[tuple[str, str]], table: str, derived: Sequence[Trait]) -> str:
    """Append to ``ctes`` one step per derived trait over ``table`` (each may read the
    columns and the traits before it); returns the last step's name."""
    prev = table
    for i, t in enumerate(derived):
        if t.ratio is not None:
            n, d = (q(x) for x in t.ratio)
            expr = f"CASE WHEN {d} = 0 THEN NULL ELSE CAST({n} AS DOUBLE) / {d} END"
        else:
            expr = f"({t.sql})"
        ctes.append((f"d{i}", f"SELECT *, {expr} AS {q(t.name)} FROM {prev}"))
        prev = f"d{i}"
    return prev


def derive_query(table: str, derived: Sequence[Trait]) -> str:
    """``table``'s rows with the ``derived`` traits added in order (each may read the
    columns and the traits before it)."""
    if not derived:
        return f"SELECT * FROM {table}"
    ctes: list[tuple[str, str]] = []
    _derive(ctes, table, derived)
    return with_query(ctes)


def with_query(ctes: Sequence[tuple[str, str]]) -> str:
    """``WITH a AS (...), b AS (...) SELECT * FROM <last>``."""
    body = ",\n".join(f"{name} AS ({sql})" for name, sql in ctes)
    return f"WITH {body}\nSELECT * FROM {ctes[-1][0]}"


def source_query(parts: Sequence[StreamPart], now: float, keys: Sequence[str] | None,
                 derived: Sequence[Trait], out: Sequence[str]) -> str:
    """One query computing every trait of ``parts`` (one source's streams), plus
    ``derived`` traits when they read only those."""
    ctes = [(f"s{i}", stream_cte(p, now, keys)) for i, p in enumerate(parts)]
    ctes += joined([(f"s{i}", p.traits) for i, p in enumerate(parts)], derived, out)
    return with_query(ctes)


def derived_query(tables: Sequence[tuple[str, Sequence[Trait]]], derived: Sequence[Trait],
                  out: Sequence[str]) -> str:
    """Join the per-source trait tables and add the derived traits."""
    return with_query(joined(tables, derived, out))

